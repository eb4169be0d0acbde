package dashboard_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// The Routing page: an alias, a combo created and then edited (strategy,
// order, weights), a model→combo mapping, each with the targets it
// resolves to now; a bad target's error shows next to the combo form.
func TestRoutingAliasComboMapping(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	up := newUpstream(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "fake", "type": "openai-compatible",
		"base_url": up.URL, "api_key": upstreamSecret, "models": []string{"m1", "m2"}})

	b := browser.New(t)
	for _, width := range []int{390, 1280} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			routingFlow(t, e, b.Page(t, width, 900))
		})
	}
}

// routingFlow is TestRoutingAliasComboMapping at one width, on a gateway
// with provider fake (models m1 and m2) and nothing else in its routing.
func routingFlow(t *testing.T, e *admintest.Env, p *browser.Page) {
	for _, path := range []string{"/api/model-combo-mappings", "/api/models/alias"} { // a clean start
		var list map[string][]map[string]any
		decodeJSON(t, e.Want(http.StatusOK, "GET", path, nil).Body, &list)
		for _, v := range list["mappings"] {
			e.Want(http.StatusNoContent, "DELETE", path+"/"+v["id"].(string), nil)
		}
		for _, v := range list["aliases"] {
			e.Want(http.StatusNoContent, "DELETE", path+"/"+v["name"].(string), nil)
		}
	}
	e.Do("DELETE", "/api/combos/team", nil)
	p.AllowStatus(http.StatusBadRequest, "/api/combos")
	openLoggedIn(p, e, "routing")
	p.WaitText("#aliases-list", "No aliases")
	p.WaitText("main", "Create a combo first")

	// An alias to a model resolves to it.
	p.SetValue("#alias-name", "fast")
	p.SetValue("#alias-target", "fake/m1")
	p.Click("#alias-form button[type=submit]")
	p.WaitText("#aliases-list .resolved", "fake/m1")

	// A combo: a target that is not provider/model is refused, the API's
	// message next to the form.
	p.SetValue("#combo-name", "team")
	p.SetValue("#combo-targets li:nth-child(1) .target-model", "m1")
	p.Click("#combo-save")
	p.WaitText("#combo-form .error[role=alert]", "provider/model")
	p.SetValue("#combo-targets li:nth-child(1) .target-model", "fake/m1")
	p.Click("#combo-add-target")
	p.SetValue("#combo-targets li:nth-child(2) .target-model", "fake/m2")
	p.Click("#combo-save")
	p.WaitText("#combos-list", "team")
	if got := texts(p, "#combos-list .resolved li"); got != "fake/m1|fake/m2" {
		t.Errorf("the new combo resolves to %q", got)
	}

	// Edit it: weighted, m2 first, m1 with weight 3.
	p.Click(`button[aria-label="Edit combo team"]`)
	p.WaitText("#combo-form h3", "Edit combo team")
	p.CheckLayout(t)
	p.Screenshot("combo-edit")
	if got := browser.Eval[string](p, `[...document.querySelectorAll("#combo-targets .target-model")].map(i => i.value).join(",") + " " + document.getElementById("combo-name").readOnly`); got != "fake/m1,fake/m2 true" {
		t.Errorf("the editor opened with %q", got)
	}
	p.SetValue("#combo-strategy", "weighted")
	p.SetValue("#combo-targets li:nth-child(1) .target-weight", "3")
	p.Click(`#combo-targets li:nth-child(2) button[aria-label="Move up"]`)
	p.Click("#combo-save")
	p.WaitText("#combos-list", "weighted")
	if got := texts(p, "#combos-list .resolved li"); got != "fake/m2|fake/m1 ×3" {
		t.Errorf("the edited combo resolves to %q", got)
	}
	c := e.Want(http.StatusOK, "GET", "/api/combos/team", nil).Body
	if !strings.Contains(string(c), `"strategy":"weighted","targets":[{"provider":"fake","model":"m2"},{"provider":"fake","model":"m1","weight":3}]`) {
		t.Fatalf("the combo after editing: %s", c)
	}

	// An alias to the combo, and one to nowhere.
	p.SetValue("#alias-name", "smart")
	p.SetValue("#alias-target", "team")
	p.Click("#alias-form button[type=submit]")
	p.WaitText("#aliases-list", "smart")
	p.SetValue("#alias-name", "lost")
	p.SetValue("#alias-target", "gone/model")
	p.Click("#alias-form button[type=submit]")
	p.WaitText("#aliases-list", "resolves to nothing")
	if got := texts(p, "#aliases-list tbody tr:nth-child(3) .resolved li"); got != "fake/m2|fake/m1 ×3" {
		t.Errorf("alias smart resolves to %q", got)
	}

	// A mapping sends gpt-* to the combo.
	p.SetValue("#mapping-pattern", "gpt-*")
	p.SetValue("#mapping-combo", "team")
	p.Click("#mapping-form button[type=submit]")
	p.WaitText("#mappings-list tbody", "gpt-*")
	if got := texts(p, "#mappings-list .resolved li") + " " + texts(p, "#mappings-list .resolved .badge"); got != "fake/m2|fake/m1 ×3 weighted" {
		t.Errorf("the mapping resolves to %q", got)
	}
	p.CheckLayout(t)
	p.Screenshot("routing")
	if m := string(e.Want(http.StatusOK, "GET", "/api/model-combo-mappings", nil).Body); !strings.Contains(m, `"pattern":"gpt-*","combo":"team"`) {
		t.Fatalf("mappings: %s", m)
	}
	// What the page shows is what the gateway does: gpt-4 goes to the combo.
	if r := e.Do("POST", "/v1/chat/completions", admintest.Chat("gpt-4")); r.Status != http.StatusOK {
		t.Fatalf("gpt-4 through the mapping = %d %s", r.Status, r.Body)
	}
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
