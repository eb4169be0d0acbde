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
	// (the list at the top of the page, not under its sticky header)
	p.Eval(`window.scrollTo(0, 0)`)
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

// A management key is made from the Keys page's scope picker; the key it
// shows administers the gateway with the Bearer header alone, and its
// scopes are changed from the policy form.
func TestKeyScopePicker(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	p := browser.New(t).Page(t, 1280, 900)
	p.Navigate(e.Srv.URL + "/dashboard/keys")
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.Click("#nav-keys")
	p.SetValue("#key-name", "automation")
	p.Click("#key-scope-manage")
	p.Click("#key-scope-mcp")
	p.Click("#key-create")
	raw := p.WaitText("#key-raw", "sk-omni-")
	p.WaitText("#keys-list", "manage")
	p.Screenshot("key-scopes")
	p.CheckLayout(t)

	keys := e.Want(http.StatusOK, "GET", "/api/keys", nil).Body
	if !strings.Contains(string(keys), `"scopes":["manage","mcp"]`) {
		t.Fatalf("the key's scopes: %s", keys)
	}
	anon := &http.Client{}
	if r := routetestSend(t, anon, "GET", e.Srv.URL+"/api/providers", raw); r != http.StatusOK {
		t.Fatalf("the new management key: %d", r)
	}

	// Take manage away in the policy form: the key is refused.
	id := strings.Split(strings.Split(string(keys), `"id":"`)[1], `"`)[0]
	p.Click("#limits-" + id)
	p.WaitVisible("#policy-scope-manage:checked")
	p.Click("#policy-scope-manage")
	p.Click("#policy-form button[type=submit]")
	p.WaitText("#policy-form", "Saved.")
	if r := routetestSend(t, anon, "GET", e.Srv.URL+"/api/providers", raw); r != http.StatusForbidden {
		t.Fatalf("the key without manage: %d", r)
	}
}

// routetestSend sends a GET with a Bearer key and no cookie and returns
// the status.
func routetestSend(t *testing.T, c *http.Client, method, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
