package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// A key's policy, limits and budget are set from the Keys page, through
// the management API.
func TestKeyPolicyAndBudget(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	id := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "ci"}).Object(t)["id"].(string)

	p := browser.New(t).Page(t, 1280, 900)
	p.Navigate(e.Srv.URL + "/dashboard/keys")
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.Click("#nav-keys")
	p.Click("#limits-" + id)
	p.SetValue("#policy-form input[name=rpm]", "60")
	p.SetValue("#policy-form input[name=allowed_providers]", "fake, other")
	p.Click("#policy-form button[type=submit]")
	p.WaitText("#policy-form", "Saved.")
	p.WaitText("#keys-list", "RPM 60")
	// Limits opens fresh forms once the key's budget is read: fill in
	// the new form, not the one it is about to replace.
	p.Eval(`document.querySelector("#budget-form").dataset.stale = "1"`)
	p.Click("#limits-" + id)
	p.WaitVisible("#budget-form:not([data-stale]) input[name=dailyLimitUsd]")
	p.SetValue("#budget-form input[name=dailyLimitUsd]", "5")
	p.Click("#budget-form button[type=submit]")
	p.WaitText("#budget-form", "Saved.")
	p.Screenshot("key-limits")

	k := string(e.Want(http.StatusOK, "GET", "/api/keys/"+id, nil).Body)
	if !strings.Contains(k, `"rpm":60`) || !strings.Contains(k, `"fake"`) {
		t.Fatalf("the key after saving: %s", k)
	}
	if b := string(e.Want(http.StatusOK, "GET", "/api/usage/budget?apiKeyId="+id, nil).Body); !strings.Contains(b, "5") {
		t.Fatalf("the budget after saving: %s", b)
	}
}
