package models_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/config"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

func TestAliasesCombosMappings(t *testing.T) {
	bad, good := newUpstream(t, "bad"), newUpstream(t, "good")
	bad.SetStatus(http.StatusInternalServerError)
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "first", "type": "openai", "base_url": bad.URL, "api_key": "sk-first-000000"})
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "second", "type": "openai-compatible", "base_url": good.URL, "api_key": "sk-second-00000"})

	// A priority combo falls back from the failing provider to the other.
	r := e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "team", "strategy": "priority", "targets": []any{"first/m1", map[string]any{"provider": "second", "model": "m2"}}})
	if v := r.Object(t); v["strategy"] != "priority" || len(v["targets"].([]any)) != 2 {
		t.Fatalf("combo = %s", r.Body)
	}
	e.WantError(http.StatusConflict, "POST", "/api/combos", map[string]any{"name": "team", "targets": []string{"first/m1"}})
	if got := e.ChatText("team"); got != "hi from good" {
		t.Fatalf("combo answered %q", got)
	}
	if _, models := bad.Calls(); len(models) == 0 || models[0] != "m1" {
		t.Fatalf("first target was not tried: %v", models)
	}
	if _, models := good.Calls(); len(models) != 1 || models[0] != "m2" {
		t.Fatalf("fallback target saw %v", models)
	}

	// Aliases lead to combos or models.
	e.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"alias": "smart", "model": "team"})
	e.Want(http.StatusOK, "POST", "/api/models/alias", map[string]string{"name": "smart", "target": "second/m3"})
	if got := e.ChatText("smart"); got != "hi from good" {
		t.Fatalf("alias answered %q", got)
	}
	if al := e.Want(http.StatusOK, "GET", "/api/models/alias", nil); !strings.Contains(string(al.Body), `"target":"second/m3"`) {
		t.Fatalf("aliases = %s", al.Body)
	}
	if ids := e.ModelIDs(); !contains(ids, "smart") || !contains(ids, "team") {
		t.Fatalf("/v1/models = %v", ids)
	}
	e.Want(http.StatusNoContent, "DELETE", "/api/models/alias/smart", nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/models/alias?name=smart", nil)
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("smart"))

	// Glob mappings send unknown model names to a combo.
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("gpt-5-turbo"))
	e.WantError(http.StatusBadRequest, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-[", "combo": "team"})
	e.WantError(http.StatusBadRequest, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-*", "combo": "nope"})
	mr := e.Want(http.StatusCreated, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-*", "comboId": "team", "priority": 1}).Object(t)
	id, _ := mr["id"].(string)
	if id == "" || mr["enabled"] != true {
		t.Fatalf("mapping = %v", mr)
	}
	if got := e.ChatText("gpt-5-turbo"); got != "hi from good" {
		t.Fatalf("mapped model answered %q", got)
	}
	e.Want(http.StatusOK, "GET", "/api/model-combo-mappings/"+id, nil)
	e.Want(http.StatusOK, "PUT", "/api/model-combo-mappings/"+id, map[string]any{"pattern": "claude-*"})
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("gpt-5-turbo"))
	e.ChatText("claude-anything")
	e.WantError(http.StatusBadRequest, "PUT", "/api/model-combo-mappings/"+id, map[string]any{"pattern": "[x"})
	e.WantError(http.StatusNotFound, "PUT", "/api/model-combo-mappings/map_nope", map[string]any{"pattern": "x"})

	// A combo in use by a mapping cannot go.
	e.WantError(http.StatusConflict, "DELETE", "/api/combos/team", nil)
	e.Want(http.StatusNoContent, "DELETE", "/api/model-combo-mappings/"+id, nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/model-combo-mappings/"+id, nil)

	// PUT changes the strategy and targets in place.
	up := e.Want(http.StatusOK, "PUT", "/api/combos/team", map[string]any{"strategy": "weighted", "targets": []string{"second/m2*3", "first/m1"}}).Object(t)
	if up["strategy"] != "weighted" || up["targets"].([]any)[0].(map[string]any)["weight"] != 3.0 {
		t.Fatalf("updated combo = %v", up)
	}
	e.Want(http.StatusNoContent, "DELETE", "/api/combos/team", nil)
	e.WantError(http.StatusNotFound, "GET", "/api/combos/team", nil)
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("team"))
}

func TestConfigAliasesAndCombosAreReadOnly(t *testing.T) {
	up := newUpstream(t, "cfg")
	e := newEnv(t, func(c *config.Config) {
		c.Route.Providers = []config.RouteProvider{{ID: "declared", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-config-secret-4321"}, Models: []string{"gpt-4o"}}}
		c.Route.Aliases = map[string]string{"cfg-alias": "declared/gpt-4o"}
		c.Route.Combos = []config.RouteCombo{{Name: "cfg-combo", Targets: []string{"declared/gpt-4o"}}}
	})
	e.Login()
	e.WantError(http.StatusConflict, "POST", "/api/models/alias", map[string]string{"name": "cfg-alias", "target": "x/y"})
	e.WantError(http.StatusConflict, "DELETE", "/api/models/alias/cfg-alias", nil)
	e.WantError(http.StatusConflict, "PUT", "/api/combos/cfg-combo", map[string]any{"strategy": "latency"})
	e.WantError(http.StatusConflict, "DELETE", "/api/combos/cfg-combo", nil)

	cat := e.Want(http.StatusOK, "GET", "/api/models/catalog", nil)
	// Besides the configured state: the provider types this build can
	// build and the known services a provider can be added for by id.
	for _, want := range []string{`"id":"declared/gpt-4o"`, `"source":"config"`, `"cfg-alias"`, `"cfg-combo"`,
		`{"id":"groq","type":"openai-compatible","baseUrl":"https://api.groq.com/openai/v1"}`} {
		if !strings.Contains(string(cat.Body), want) {
			t.Fatalf("catalog lacks %s: %s", want, cat.Body)
		}
	}
	var types struct {
		ProviderTypes []string `json:"providerTypes"`
	}
	if err := json.Unmarshal(cat.Body, &types); err != nil || !slices.IsSorted(types.ProviderTypes) ||
		!slices.Equal(types.ProviderTypes, routeapp.Registry().Types()) || !slices.Contains(types.ProviderTypes, "openai-compatible") {
		t.Fatalf("providerTypes %v, want the registry's %v, sorted", types.ProviderTypes, routeapp.Registry().Types())
	}
	if got := e.ChatText("cfg-alias"); got != "hi from cfg" {
		t.Fatalf("config alias answered %q", got)
	}
}

func TestBadInputIs4xx(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL})
	cases := []struct {
		status       int
		method, path string
		body         any
	}{
		{400, "POST", "/api/combos", map[string]any{"name": "c", "strategy": "random", "targets": []string{"acme/m"}}},
		{400, "POST", "/api/combos", map[string]any{"name": "c", "targets": []string{"ghost/m"}}},
		{400, "POST", "/api/combos", map[string]any{"name": "c", "targets": []string{"no-slash"}}},
		{400, "POST", "/api/combos", map[string]any{"name": "c", "targets": []string{"acme/m*0"}}},
		{400, "POST", "/api/combos", map[string]any{"name": "c", "targets": []string{}}},
		{400, "POST", "/api/combos", map[string]any{"name": "a/b", "targets": []string{"acme/m"}}},
		{400, "POST", "/api/combos", map[string]any{"targets": []string{"acme/m"}}},
		{400, "POST", "/api/combos", `{"name":"c","targets":"acme/m"}`},
		{404, "PUT", "/api/combos/ghost", map[string]any{"strategy": "priority"}},
		{400, "POST", "/api/models/alias", map[string]string{"name": "x"}},
		{400, "POST", "/api/models/alias", map[string]string{"name": "x", "target": "x"}},
		{400, "POST", "/api/models/alias", map[string]string{"name": "has space", "target": "acme/m"}},
		{400, "POST", "/api/model-combo-mappings", map[string]any{"combo": "x"}},
		{404, "GET", "/api/model-combo-mappings/nope", nil},
	}
	for _, c := range cases {
		e.WantError(c.status, c.method, c.path, c.body)
	}
}

// Aliases, combos and mappings are listed with the targets they lead to
// now, as the router resolves them: an alias through a chain of aliases
// to a combo's ordered, weighted targets; a mapping to its combo's; an
// alias to a provider that is gone, to nothing, with the reason.
func TestResolvedTargets(t *testing.T) {
	up := newUpstream(t, "up")
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai-compatible", "base_url": up.URL, "api_key": "sk-p-0000000000"})
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "team", "strategy": "weighted", "targets": []string{"p/m1*3", "p/m2"}})
	e.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"name": "inner", "target": "team"})
	e.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"name": "outer", "target": "inner"})
	e.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"name": "lost", "target": "gone/m"})
	e.Want(http.StatusCreated, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-*", "combo": "team"})

	want := `{"targets":[{"provider":"p","model":"m1","weight":3},{"provider":"p","model":"m2"}],"strategy":"weighted"}`
	type res struct {
		Resolved json.RawMessage `json:"resolved"`
		Name     string          `json:"name"`
	}
	var aliases struct{ Aliases []res }
	decode(t, e.Want(http.StatusOK, "GET", "/api/models/alias", nil).Body, &aliases)
	got := map[string]string{}
	for _, a := range aliases.Aliases {
		got[a.Name] = string(a.Resolved)
	}
	if got["outer"] != want || got["inner"] != want {
		t.Errorf("aliases resolve to %v, want %s", got, want)
	}
	if !strings.Contains(got["lost"], `"targets":[]`) || !strings.Contains(got["lost"], `"error":"`) {
		t.Errorf("an alias to a missing provider resolves to %s", got["lost"])
	}
	var maps struct{ Mappings []res }
	decode(t, e.Want(http.StatusOK, "GET", "/api/model-combo-mappings", nil).Body, &maps)
	if len(maps.Mappings) != 1 || string(maps.Mappings[0].Resolved) != want {
		t.Errorf("mappings = %+v", maps.Mappings)
	}
	var cat struct{ Combos, Aliases []res }
	decode(t, e.Want(http.StatusOK, "GET", "/api/models/catalog", nil).Body, &cat)
	if len(cat.Combos) != 1 || string(cat.Combos[0].Resolved) != want || len(cat.Aliases) != 3 {
		t.Errorf("catalog combos %+v aliases %+v", cat.Combos, cat.Aliases)
	}
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
