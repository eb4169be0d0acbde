package dashboard_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// The Keys page lists the registered keys another system issued, revokes
// one, saves the registered-key quotas and checks an account against them.
func TestRegisteredKeysAndQuotas(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	issuer := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "billing-system", "scopes": []string{"issue"}}).Object(t)["key"].(string)
	reg := e.Want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "customer-7", "provider": "openai", "accountId": "acct-7", "dailyBudget": 2.5},
		admintest.Bearer(issuer)...).Object(t)
	regKey, _ := reg["key"].(string)
	// One issued from the management login, for another account.
	e.Want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "customer-9", "provider": "openai", "accountId": "acct-9"})

	p := browser.New(t).Page(t, 1280, 900)
	openLoggedIn(p, e, "keys")
	p.WaitText("#registered-list", "customer-7")
	row := texts(p, "#registered-list tbody tr")
	for _, want := range []string{"openai", "acct-7", "active", "$2.5/day"} {
		if !strings.Contains(row, want) {
			t.Errorf("the registered key's row %q lacks %q", row, want)
		}
	}
	if regKey == "" || strings.Contains(browser.Eval[string](p, `document.body.innerText`), regKey) {
		t.Error("the registered key's secret is on the page")
	}
	// Registered keys are not listed with the gateway's own.
	if strings.Contains(texts(p, "#keys-list"), "customer-7") {
		t.Error("the registered key is listed with the gateway keys")
	}

	// Quotas: one key per account, and acct-9 (issued from this login) is at it.
	p.SetValue(`#registered-quotas input[name=maxKeysPerAccount]`, "1")
	p.Click(`#registered-quotas button[type=submit]`)
	p.WaitText("#registered-quotas", "Saved.")
	if q := e.Want(http.StatusOK, "GET", "/api/settings/registered-keys", nil).Object(t); q["maxKeysPerAccount"] != float64(1) {
		t.Fatalf("quotas after saving: %v", q)
	}
	p.SetValue(`#quota-check input[name=provider]`, "openai")
	p.SetValue(`#quota-check input[name=accountId]`, "acct-9")
	p.Click(`#quota-check button[type=submit]`)
	p.WaitText("#quota-result", "at quota")
	p.SetValue(`#quota-check input[name=accountId]`, "acct-10")
	p.Click(`#quota-check button[type=submit]`)
	p.WaitText("#quota-result", "may issue")
	p.Screenshot("registered")

	// Revoke: the key stops working.
	if r := e.Do("GET", "/v1/models", nil, admintest.Bearer(regKey)...); r.Status != http.StatusOK {
		t.Fatalf("a live registered key got %d", r.Status)
	}
	p.Click(`button[aria-label="Revoke registered key customer-7"]`)
	p.Click("dialog[open] button[value=ok]")
	p.WaitText("#registered-list", "revoked")
	if r := e.Do("GET", "/v1/models", nil, admintest.Bearer(regKey)...); r.Status != http.StatusUnauthorized {
		t.Errorf("a revoked registered key got %d", r.Status)
	}
}
