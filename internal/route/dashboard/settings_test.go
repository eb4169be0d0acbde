package dashboard_test

import (
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// A backup is taken from the Settings page and listed there; the
// resilience settings are saved through the management API.
func TestSettingsBackupAndResilience(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	p := browser.New(t).Page(t, 1280, 900)
	p.Navigate(e.Srv.URL + "/dashboard/settings")
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.Click("#nav-settings")
	p.WaitText("main", "No backups yet")
	p.Click("#backup-create")
	p.WaitText("main", "manual")
	p.SetValue("#resilience-form input[name=breaker_threshold]", "7")
	p.Click("#res-lockout_enabled")
	p.Click("#resilience-form button[type=submit]")
	p.WaitText("#resilience-form", "Saved.")
	p.Screenshot("settings")
	set := e.Want(200, "GET", "/api/resilience", nil).Object(t)["settings"].(map[string]any)
	if set["breaker_threshold"] != float64(7) || set["lockout_enabled"] != true {
		t.Fatalf("resilience settings after saving = %v", set)
	}
}
