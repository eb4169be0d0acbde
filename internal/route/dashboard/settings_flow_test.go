package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// The Settings page: usage retention saved; require-login turned off
// (the management API then answers without a session) and on again; the
// password changed, which ends the session, and the new one logs in.
func TestSettingsLoginPasswordRetention(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	p := browser.New(t).Page(t, 1280, 900)
	p.AllowStatus(http.StatusUnauthorized, "/api/auth/password")
	p.AllowStatus(http.StatusBadRequest, "/api/settings/usage-retention")
	openLoggedIn(p, e, "settings")

	// Retention: a bad value's error next to the form, then a good one.
	p.SetValue("#retention-days", "0")
	p.Eval(`document.getElementById("retention-days").removeAttribute("min")`)
	p.Click("#retention-form button[type=submit]")
	p.WaitText("#retention-form + .feedback .error", "days must be")
	p.SetValue("#retention-days", "45")
	p.Click("#retention-form button[type=submit]")
	p.WaitText("main", "usage is kept 45 days")
	if r := e.Want(http.StatusOK, "GET", "/api/settings/usage-retention", nil).Object(t); r["days"] != float64(45) {
		t.Fatalf("retention after saving: %v", r)
	}

	// Require-login off: a client without a session manages the gateway.
	anon := func() int {
		r, err := http.Get(e.Srv.URL + "/api/providers")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if s := anon(); s != http.StatusUnauthorized {
		t.Fatalf("without a session, before: %d", s)
	}
	p.Click("#require-login")
	p.WaitText("main", "without a password")
	if s := anon(); s != http.StatusOK {
		t.Fatalf("with require-login off, a client without a session got %d", s)
	}
	if browser.Eval[bool](p, `!document.getElementById("logout").hidden`) {
		t.Error("the log-out button is still shown with require-login off")
	}
	p.Click("#require-login")
	p.WaitText("main", "need the password")
	if s := anon(); s != http.StatusUnauthorized {
		t.Fatalf("with require-login on again, a client without a session got %d", s)
	}

	// Password: the wrong current one is refused next to the form; then
	// it changes, the session ends, and only the new one logs in.
	p.SetValue("#password-form input[name=current_password]", "not the password")
	p.SetValue("#password-form input[name=password]", "a brand new password")
	p.SetValue("#password-form input[name=repeat]", "a brand new password")
	p.Click("#password-form button[type=submit]")
	p.WaitText("#password-form .error[role=alert]", "wrong")
	p.SetValue("#password-form input[name=current_password]", admintest.Password)
	p.Click("#password-form button[type=submit]")
	p.WaitVisible("#login-form .notice") // after a navigation: WaitVisible follows it
	if got := p.Text("#login-form .notice"); !strings.Contains(got, "Password changed") {
		t.Errorf("the login form after the change says %q", got)
	}
	p.Screenshot("password-changed")
	p.AllowStatus(http.StatusUnauthorized, "/api/auth/login")
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.WaitVisible("#login-form .error[role=alert]")
	p.SetValue("#login-password", "a brand new password")
	p.Click("#login-submit")
	p.WaitVisible("#password-form")
	if !strings.HasSuffix(browser.Eval[string](p, `location.pathname + location.search`), "/dashboard/settings") {
		t.Errorf("after logging in again the page is %s", browser.Eval[string](p, `location.href`))
	}
	p.Screenshot("settings")
}
