package manage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

func bearer(k string) []string { return []string{"Authorization", "Bearer " + k} }

func TestKeysGateV1(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Route.RequireAPIKey = true
		c.Route.APIKeys = []config.Secret{"config-key-1"}
	})
	e.login()
	e.wantError(http.StatusBadRequest, "POST", "/api/keys", map[string]string{"name": " "})
	r := e.want(http.StatusCreated, "POST", "/api/keys", map[string]string{"name": "ci"}).Object(t)
	raw, _ := r["key"].(string)
	id, _ := r["id"].(string)
	prefix, _ := r["prefix"].(string)
	if !strings.HasPrefix(raw, "sk-omni-") || len(raw) < 40 || id == "" || !strings.HasPrefix(raw, prefix) || r["created_at"] == nil {
		t.Fatalf("created key = %v", r)
	}

	list := e.want(http.StatusOK, "GET", "/api/keys", nil)
	if strings.Contains(string(list.Body), raw) || strings.Contains(string(list.Body), raw[12:]) || !strings.Contains(string(list.Body), prefix) {
		t.Fatalf("key list leaks the key or lacks its prefix: %s", list.Body)
	}
	var n int
	if err := e.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM route_api_keys WHERE key_hash = ? OR prefix = ?`, raw, raw).Scan(&n); err != nil || n != 0 {
		t.Fatalf("raw key stored (%d rows, %v)", n, err)
	}

	e.wantError(http.StatusUnauthorized, "GET", "/v1/models", nil)
	e.wantError(http.StatusUnauthorized, "GET", "/v1/models", nil, bearer("sk-omni-not-a-key")...)
	e.want(http.StatusOK, "GET", "/v1/models", nil, bearer(raw)...)
	e.want(http.StatusOK, "GET", "/v1/models", nil, "x-api-key", raw)
	e.want(http.StatusOK, "GET", "/v1/models", nil, bearer("config-key-1")...)

	e.want(http.StatusNoContent, "DELETE", "/api/keys/"+id, nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/keys/"+id, nil)
	e.wantError(http.StatusUnauthorized, "GET", "/v1/models", nil, bearer(raw)...)
	e.want(http.StatusOK, "GET", "/v1/models", nil, bearer("config-key-1")...)
}

func TestProviderLifecycle(t *testing.T) {
	up1, up2 := newUpstream(t, "one"), newUpstream(t, "two")
	e := newEnv(t, nil)
	e.login()
	const secret = "sk-test-upstream-secret-1234"
	r := e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{
		"id": "acme", "type": "openai", "base_url": up1.URL, "api_key": secret, "models": []string{"gpt-4o"},
		"headers": map[string]string{"X-Team": "blue", "X-Api-Key": "hdr-secret-value-9876"},
	})
	if strings.Contains(string(r.Body), secret) || strings.Contains(string(r.Body), "hdr-secret-value") {
		t.Fatalf("create answer leaks a secret: %s", r.Body)
	}
	v := r.Object(t)
	creds, _ := v["credentials"].([]any)
	if len(creds) != 1 || creds[0].(map[string]any)["key"] != "sk-…1234" || v["source"] != "stored" || v["connections"] != 1.0 {
		t.Fatalf("created provider = %s", r.Body)
	}
	if h := v["headers"].(map[string]any); h["X-Team"] != "blue" || h["X-Api-Key"] == "hdr-secret-value-9876" {
		t.Fatalf("headers = %v", h)
	}

	// At rest the key is sealed.
	var stored string
	if err := e.db.QueryRow(context.Background(), `SELECT api_key FROM route_credentials WHERE provider_id = ?`, "acme").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, secret) || strings.Contains(stored, "upstream-secret") || !strings.HasPrefix(stored, "v1:") {
		t.Fatalf("credential stored as %q", stored)
	}
	if g := e.want(http.StatusOK, "GET", "/api/providers/acme", nil); strings.Contains(string(g.Body), secret) || !strings.Contains(string(g.Body), "sk-…1234") {
		t.Fatalf("GET provider = %s", g.Body)
	}
	if g := e.want(http.StatusOK, "GET", "/api/providers", nil); strings.Contains(string(g.Body), secret) || !strings.Contains(string(g.Body), `"acme"`) {
		t.Fatalf("GET providers = %s", g.Body)
	}

	// Traffic reaches the upstream with the provider's own key.
	if got := e.chatText("acme/gpt-4o"); got != "hi from one" {
		t.Fatalf("chat answered %q", got)
	}
	auths, models := up1.calls()
	if len(auths) != 1 || auths[0] != "Bearer "+secret || models[0] != "gpt-4o" {
		t.Fatalf("upstream saw auth %q models %q", auths, models)
	}
	if ids := e.modelIDs(); !contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models = %v", ids)
	}

	// A new base URL moves traffic at once; credentials are kept when the
	// request says so (TestProviderMoveNeedsItsCredentialsAgain).
	e.want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"base_url": up2.URL, "keep_credentials": true})
	if got := e.chatText("acme/gpt-4o"); got != "hi from two" {
		t.Fatalf("after PUT chat answered %q", got)
	}
	if auths, _ := up2.calls(); len(auths) != 1 || auths[0] != "Bearer "+secret {
		t.Fatalf("second upstream saw %q", auths)
	}
	// Replacing the credentials rotates the key.
	e.want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"api_keys": []any{"sk-rotated-key-0000", map[string]any{"api_key": "sk-second-key-5555", "label": "b"}}})
	e.chatText("acme/gpt-4o")
	e.chatText("acme/gpt-4o")
	auths, _ = up2.calls()
	if !contains(auths[1:], "Bearer sk-rotated-key-0000") || !contains(auths[1:], "Bearer sk-second-key-5555") {
		t.Fatalf("after rotation upstream saw %q (want both keys round-robin)", auths)
	}
	// Disabled: not routable, not listed.
	e.want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"enabled": false})
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("acme/gpt-4o"))
	e.want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"enabled": true})
	e.chatText("acme/gpt-4o")

	e.want(http.StatusNoContent, "DELETE", "/api/providers/acme", nil)
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("acme/gpt-4o"))
	e.wantError(http.StatusNotFound, "GET", "/api/providers/acme", nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/providers/acme", nil)
	if ids := e.modelIDs(); contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models still lists a deleted provider: %v", ids)
	}
}

func TestStoredStateSurvivesRestart(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.login()
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL, "api_key": "sk-restart-key-1111"})
	e.want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"name": "fast", "target": "acme/gpt-4o-mini"})

	cfg := config.Default()
	b, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.db, MasterKey: masterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if conns := b.Table.Connections("acme"); len(conns) != 1 || conns[0].ID != "acme#1" {
		t.Fatalf("connections after restart = %+v", conns)
	}
	if targets, _, err := b.Table.Resolve("fast"); err != nil || len(targets) != 1 || targets[0].Model != "gpt-4o-mini" {
		t.Fatalf("alias after restart: %+v %v", targets, err)
	}
	// Another master key cannot open the credentials: the provider has no
	// usable connection, and nothing breaks.
	c, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.db, MasterKey: []byte("another-master-key-of-32-bytes!!"), Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if conns := c.Table.Connections("acme"); len(conns) != 0 {
		t.Fatalf("connections under another master key = %+v", conns)
	}
}

func TestConfigProvidersAreReadOnly(t *testing.T) {
	up := newUpstream(t, "cfg")
	e := newEnv(t, func(c *config.Config) {
		c.Route.Providers = []config.RouteProvider{{ID: "declared", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-config-secret-4321"}, Models: []string{"gpt-4o"}}}
		c.Route.Aliases = map[string]string{"cfg-alias": "declared/gpt-4o"}
		c.Route.Combos = []config.RouteCombo{{Name: "cfg-combo", Targets: []string{"declared/gpt-4o"}}}
	})
	e.login()
	r := e.want(http.StatusOK, "GET", "/api/providers/declared", nil)
	if v := r.Object(t); v["source"] != "config" || strings.Contains(string(r.Body), "sk-config-secret-4321") || !strings.Contains(string(r.Body), "sk-…4321") {
		t.Fatalf("config provider = %s", r.Body)
	}
	e.wantError(http.StatusConflict, "PUT", "/api/providers/declared", map[string]any{"base_url": "http://example.com"})
	e.wantError(http.StatusConflict, "DELETE", "/api/providers/declared", nil)
	e.wantError(http.StatusConflict, "POST", "/api/providers", map[string]any{"id": "declared", "type": "openai"})
	e.wantError(http.StatusConflict, "POST", "/api/models/alias", map[string]string{"name": "cfg-alias", "target": "x/y"})
	e.wantError(http.StatusConflict, "DELETE", "/api/models/alias/cfg-alias", nil)
	e.wantError(http.StatusConflict, "PUT", "/api/combos/cfg-combo", map[string]any{"strategy": "latency"})
	e.wantError(http.StatusConflict, "DELETE", "/api/combos/cfg-combo", nil)

	cat := e.want(http.StatusOK, "GET", "/api/models/catalog", nil)
	for _, want := range []string{`"id":"declared/gpt-4o"`, `"source":"config"`, `"cfg-alias"`, `"cfg-combo"`} {
		if !strings.Contains(string(cat.Body), want) {
			t.Fatalf("catalog lacks %s: %s", want, cat.Body)
		}
	}
	if got := e.chatText("cfg-alias"); got != "hi from cfg" {
		t.Fatalf("config alias answered %q", got)
	}
}

func TestAliasesCombosMappings(t *testing.T) {
	bad, good := newUpstream(t, "bad"), newUpstream(t, "good")
	bad.setStatus(http.StatusInternalServerError)
	e := newEnv(t, nil)
	e.login()
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "first", "type": "openai", "base_url": bad.URL, "api_key": "sk-first-000000"})
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "second", "type": "openai-compatible", "base_url": good.URL, "api_key": "sk-second-00000"})

	// A priority combo falls back from the failing provider to the other.
	r := e.want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "team", "strategy": "priority", "targets": []any{"first/m1", map[string]any{"provider": "second", "model": "m2"}}})
	if v := r.Object(t); v["strategy"] != "priority" || len(v["targets"].([]any)) != 2 {
		t.Fatalf("combo = %s", r.Body)
	}
	e.wantError(http.StatusConflict, "POST", "/api/combos", map[string]any{"name": "team", "targets": []string{"first/m1"}})
	if got := e.chatText("team"); got != "hi from good" {
		t.Fatalf("combo answered %q", got)
	}
	if _, models := bad.calls(); len(models) == 0 || models[0] != "m1" {
		t.Fatalf("first target was not tried: %v", models)
	}
	if _, models := good.calls(); len(models) != 1 || models[0] != "m2" {
		t.Fatalf("fallback target saw %v", models)
	}

	// Aliases lead to combos or models.
	e.want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"alias": "smart", "model": "team"})
	e.want(http.StatusOK, "POST", "/api/models/alias", map[string]string{"name": "smart", "target": "second/m3"})
	if got := e.chatText("smart"); got != "hi from good" {
		t.Fatalf("alias answered %q", got)
	}
	if al := e.want(http.StatusOK, "GET", "/api/models/alias", nil); !strings.Contains(string(al.Body), `"target":"second/m3"`) {
		t.Fatalf("aliases = %s", al.Body)
	}
	if ids := e.modelIDs(); !contains(ids, "smart") || !contains(ids, "team") {
		t.Fatalf("/v1/models = %v", ids)
	}
	e.want(http.StatusNoContent, "DELETE", "/api/models/alias/smart", nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/models/alias?name=smart", nil)
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("smart"))

	// Glob mappings send unknown model names to a combo.
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("gpt-5-turbo"))
	e.wantError(http.StatusBadRequest, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-[", "combo": "team"})
	e.wantError(http.StatusBadRequest, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-*", "combo": "nope"})
	mr := e.want(http.StatusCreated, "POST", "/api/model-combo-mappings", map[string]any{"pattern": "gpt-*", "comboId": "team", "priority": 1}).Object(t)
	id, _ := mr["id"].(string)
	if id == "" || mr["enabled"] != true {
		t.Fatalf("mapping = %v", mr)
	}
	if got := e.chatText("gpt-5-turbo"); got != "hi from good" {
		t.Fatalf("mapped model answered %q", got)
	}
	e.want(http.StatusOK, "GET", "/api/model-combo-mappings/"+id, nil)
	e.want(http.StatusOK, "PUT", "/api/model-combo-mappings/"+id, map[string]any{"pattern": "claude-*"})
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("gpt-5-turbo"))
	e.chatText("claude-anything")
	e.wantError(http.StatusBadRequest, "PUT", "/api/model-combo-mappings/"+id, map[string]any{"pattern": "[x"})
	e.wantError(http.StatusNotFound, "PUT", "/api/model-combo-mappings/map_nope", map[string]any{"pattern": "x"})

	// A combo in use by a mapping cannot go.
	e.wantError(http.StatusConflict, "DELETE", "/api/combos/team", nil)
	e.want(http.StatusNoContent, "DELETE", "/api/model-combo-mappings/"+id, nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/model-combo-mappings/"+id, nil)

	// PUT changes the strategy and targets in place.
	up := e.want(http.StatusOK, "PUT", "/api/combos/team", map[string]any{"strategy": "weighted", "targets": []string{"second/m2*3", "first/m1"}}).Object(t)
	if up["strategy"] != "weighted" || up["targets"].([]any)[0].(map[string]any)["weight"] != 3.0 {
		t.Fatalf("updated combo = %v", up)
	}
	e.want(http.StatusNoContent, "DELETE", "/api/combos/team", nil)
	e.wantError(http.StatusNotFound, "GET", "/api/combos/team", nil)
	e.wantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("team"))
}

func TestProviderModelsAndChecks(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.login()
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL, "api_key": "sk-acme-key-2222", "models": []string{"gpt-4o"}})

	e.want(http.StatusCreated, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small", "kind": "embedding"})
	e.wantError(http.StatusConflict, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o"})
	e.wantError(http.StatusBadRequest, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "x", "kind": "audio"})
	e.wantError(http.StatusNotFound, "POST", "/api/provider-models", map[string]any{"provider": "ghost", "model": "x"})
	if ids := e.modelIDs(); !contains(ids, "acme/text-embedding-3-small") || !contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models = %v", ids)
	}
	// Hiding a declared model and a custom one removes them from the list.
	e.want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o", "hidden": true})
	e.want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small", "hidden": true})
	if ids := e.modelIDs(); contains(ids, "acme/gpt-4o") || contains(ids, "acme/text-embedding-3-small") {
		t.Fatalf("hidden models listed: %v", ids)
	}
	list := e.want(http.StatusOK, "GET", "/api/provider-models?provider=acme", nil)
	if !strings.Contains(string(list.Body), `"hidden":true`) || !strings.Contains(string(list.Body), `"kind":"embedding"`) {
		t.Fatalf("provider models = %s", list.Body)
	}
	e.want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o", "hidden": false})
	e.want(http.StatusNoContent, "DELETE", "/api/provider-models?provider=acme&model=text-embedding-3-small", nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small"})
	e.wantError(http.StatusNotFound, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "never-added", "hidden": true})
	if ids := e.modelIDs(); !contains(ids, "acme/gpt-4o") {
		t.Fatalf("shown again: %v", ids)
	}

	// Live checks answer ok/latency/error, never a 5xx.
	v := e.want(http.StatusOK, "POST", "/api/providers/acme/test", nil).Object(t)
	if v["ok"] != true || v["latency_ms"] == nil {
		t.Fatalf("test = %v", v)
	}
	up.setStatus(http.StatusUnauthorized)
	v = e.want(http.StatusOK, "POST", "/api/providers/acme/test", map[string]string{"model": "gpt-4o"}).Object(t)
	if v["ok"] != false || !strings.Contains(v["error"].(string), "401") {
		t.Fatalf("failing test = %v", v)
	}
	up.setStatus(http.StatusOK)
	if ms := e.want(http.StatusOK, "GET", "/api/providers/acme/models", nil).Object(t); ms["source"] != "configured" || len(ms["models"].([]any)) != 1 {
		t.Fatalf("provider models = %v", ms)
	}
	e.wantError(http.StatusNotFound, "POST", "/api/providers/ghost/test", nil)

	// Validation checks an unsaved config and stores nothing.
	v = e.want(http.StatusOK, "POST", "/api/providers/validate", map[string]any{"type": "openai", "base_url": up.URL, "api_key": "sk-unsaved-3333", "model": "gpt-4o"}).Object(t)
	if v["ok"] != true {
		t.Fatalf("validate = %v", v)
	}
	e.wantError(http.StatusBadRequest, "POST", "/api/providers/validate", map[string]any{"type": "nope"})
	if all := e.want(http.StatusOK, "GET", "/api/providers", nil); strings.Contains(string(all.Body), `"validate"`) {
		t.Fatalf("validate stored something: %s", all.Body)
	}
	auths, _ := up.calls()
	if !contains(auths, "Bearer sk-unsaved-3333") {
		t.Fatalf("validate did not call the upstream with its key: %q", auths)
	}
}

func TestPricing(t *testing.T) {
	exp, cheap := newUpstream(t, "expensive"), newUpstream(t, "cheap")
	e := newEnv(t, nil)
	e.login()
	// The router orders cost-optimized combos by these prices.
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pa", "type": "openai", "base_url": exp.URL})
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pb", "type": "openai", "base_url": cheap.URL})
	e.want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "thrifty", "strategy": "cost-optimized", "targets": []string{"pa/claude-opus-4-1", "pb/gpt-4o-mini"}})
	if got := e.chatText("thrifty"); got != "hi from cheap" {
		t.Fatalf("cost-optimized combo went to %q", got)
	}
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "pb/*", "input": 500, "output": 500})
	if got := e.chatText("thrifty"); got != "hi from expensive" {
		t.Fatalf("after the override the combo went to %q", got)
	}

	v := e.want(http.StatusOK, "GET", "/api/pricing?model=openai/gpt-4o", nil).Object(t)
	if v["input"] != 2.5 || v["output"] != 10.0 || v["source"] != "builtin" {
		t.Fatalf("built-in price = %v", v)
	}
	if all := e.want(http.StatusOK, "GET", "/api/pricing", nil); !strings.Contains(string(all.Body), `"claude-sonnet-4*"`) {
		t.Fatalf("pricing list = %s", all.Body)
	}
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "gpt-4o", "input": 1, "output": 2, "cache_read": 0.5})
	v = e.want(http.StatusOK, "GET", "/api/pricing?model=openai/gpt-4o", nil).Object(t)
	if v["input"] != 1.0 || v["output"] != 2.0 || v["cache_read"] != 0.5 || v["source"] != "override" {
		t.Fatalf("overridden price = %v", v)
	}
	// A provider-qualified override wins for that provider only.
	e.want(http.StatusOK, "POST", "/api/pricing", map[string]any{"model": "cheap/*", "input": 0.01, "output": 0.02})
	if v := e.want(http.StatusOK, "GET", "/api/pricing?model=cheap/gpt-4o", nil).Object(t); v["input"] != 0.01 {
		t.Fatalf("provider override = %v", v)
	}
	e.wantError(http.StatusNotFound, "GET", "/api/pricing?model=unknown-model-x", nil)
	e.wantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "input": -1, "output": 1})
	e.wantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "x", "input": 1})
	e.wantError(http.StatusBadRequest, "PUT", "/api/pricing", map[string]any{"pattern": "[", "input": 1, "output": 1})
	e.want(http.StatusNoContent, "DELETE", "/api/pricing?pattern=gpt-4o", nil)
	e.wantError(http.StatusNotFound, "DELETE", "/api/pricing?pattern=gpt-4o", nil)
	if v := e.want(http.StatusOK, "GET", "/api/pricing?model=gpt-4o", nil).Object(t); v["source"] != "builtin" {
		t.Fatalf("after delete = %v", v)
	}
}

func TestBadInputIs4xx(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.login()
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL})
	cases := []struct {
		status       int
		method, path string
		body         any
	}{
		{400, "POST", "/api/providers", `{"id":`},
		{400, "POST", "/api/providers", `[1,2]`},
		{400, "POST", "/api/providers", ""},
		{400, "POST", "/api/providers", map[string]any{"id": "a/b", "type": "openai"}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "no-such-type"}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok"}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "base_url": "ftp://x"}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai-compatible"}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "api_key": ""}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "api_key": "a", "api_keys": []string{"b"}}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "api_keys": []any{42}}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "models": []string{"a b"}}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "headers": map[string]string{"Bad Header": "x"}}},
		{400, "POST", "/api/providers", map[string]any{"id": "ok", "type": "openai", "enabled": "yes"}},
		{409, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai"}},
		{400, "PUT", "/api/providers/acme", map[string]any{"id": "other"}},
		{400, "PUT", "/api/providers/acme", map[string]any{"type": "no-such-type"}},
		{404, "PUT", "/api/providers/ghost", map[string]any{"type": "openai"}},
		{404, "GET", "/api/providers/ghost/models", nil},
		{404, "DELETE", "/api/providers/acme/credentials/cred_nope", nil},
		{400, "POST", "/api/providers/acme/credentials", map[string]any{"label": "no key"}},
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
		{400, "POST", "/api/keys", map[string]any{"name": 5}},
		{400, "POST", "/api/keys", map[string]any{"name": "k", "allowed_models": []string{"["}}},
		{400, "DELETE", "/api/pricing", nil},
		{400, "POST", "/api/provider-models", map[string]any{"provider": "acme"}},
		{400, "DELETE", "/api/provider-models", nil},
		{404, "GET", "/api/provider-models?provider=ghost", nil},
	}
	for _, c := range cases {
		e.wantError(c.status, c.method, c.path, c.body)
	}
	// Credentials can be added and removed one by one.
	cr := e.want(http.StatusCreated, "POST", "/api/providers/acme/credentials", map[string]any{"api_key": "sk-extra-key-7777", "label": "extra"}).Object(t)
	if cr["key"] != "sk-…7777" {
		t.Fatalf("credential = %v", cr)
	}
	e.want(http.StatusNoContent, "DELETE", "/api/providers/acme/credentials/"+cr["id"].(string), nil)
}

func TestWithoutDatabaseNoManagement(t *testing.T) {
	cfg := config.Default()
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/providers")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("management without a database: status %d", res.StatusCode)
	}
}

// Changing a provider forgets what its old configuration taught the
// resilience layers; other providers keep their state.
func TestProviderChangeClearsItsResilienceState(t *testing.T) {
	e := newEnv(t, nil)
	e.login()
	up := newUpstream(t, "acme")
	for _, id := range []string{"acme", "other"} {
		// Two connections each: a provider's only connection is never cooled.
		e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": "openai", "base_url": up.URL,
			"api_keys": []string{"sk-" + id + "-key-1111", "sk-" + id + "-key-2222"}})
	}
	tr := e.app.Resilience
	state := func() (breakers, cooldowns []string) {
		for _, b := range tr.Breakers() {
			breakers = append(breakers, b.Provider)
		}
		for _, c := range tr.Cooldowns() {
			cooldowns = append(cooldowns, c.Provider)
		}
		slices.Sort(breakers)
		slices.Sort(cooldowns)
		return breakers, cooldowns
	}
	fail := func() {
		for _, id := range []string{"acme", "other"} {
			tr.Observe(id, id+"#1", "gpt-4o", http.StatusTooManyRequests, 30*time.Second)
			tr.Observe(id, id+"#1", "gpt-4o", http.StatusServiceUnavailable, 0)
		}
	}
	for _, step := range []struct {
		name string
		do   func()
	}{
		{"update", func() {
			e.want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"api_keys": []string{"sk-acme-rotated-3333", "sk-acme-rotated-4444"}})
		}},
		{"add credential", func() {
			e.want(http.StatusCreated, "POST", "/api/providers/acme/credentials", map[string]any{"api_key": "sk-acme-third-3333"})
		}},
		{"delete", func() { e.want(http.StatusNoContent, "DELETE", "/api/providers/acme", nil) }},
	} {
		fail()
		if b, c := state(); !slices.Equal(b, []string{"acme", "other"}) || !slices.Equal(c, []string{"acme", "other"}) {
			t.Fatalf("%s: before: breakers %v, cooldowns %v", step.name, b, c)
		}
		step.do()
		if b, c := state(); !slices.Equal(b, []string{"other"}) || !slices.Equal(c, []string{"other"}) {
			t.Fatalf("%s: after: breakers %v, cooldowns %v", step.name, b, c)
		}
	}
	// The health check shows the breakers that count failures.
	fail()
	h := e.want(http.StatusOK, "GET", "/api/monitoring/health", nil).Object(t)
	bs, _ := h["breakers"].([]any)
	var shown []string
	for _, b := range bs {
		m, _ := b.(map[string]any)
		if n, _ := m["consecutiveFailures"].(float64); m["state"] != "closed" || n < 1 || m["lastStatus"] != 503.0 {
			t.Fatalf("health breaker %v", m)
		}
		shown = append(shown, m["provider"].(string))
	}
	if slices.Sort(shown); !slices.Equal(shown, []string{"acme", "other"}) || h["openBreakers"] != 0.0 {
		t.Fatalf("health breakers %v, open %v", h["breakers"], h["openBreakers"])
	}
	for range tr.Settings().BreakerThreshold {
		tr.Observe("other", "other#1", "gpt-4o", http.StatusBadGateway, 0)
	}
	h = e.want(http.StatusOK, "GET", "/api/monitoring/health", nil).Object(t)
	if h["openBreakers"] != 1.0 || !strings.Contains(fmt.Sprint(h["breakers"]), "state:open") || !strings.Contains(fmt.Sprint(h["breakers"]), "openUntil:") {
		t.Fatalf("tripped breaker not in health: %v", h)
	}
	// A refused change clears nothing.
	e.want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL,
		"api_keys": []string{"sk-acme-key-5555", "sk-acme-key-6666"}})
	fail()
	e.wantError(http.StatusBadRequest, "PUT", "/api/providers/acme", map[string]any{"id": "renamed"})
	if b, _ := state(); !slices.Equal(b, []string{"acme", "other"}) {
		t.Fatalf("refused update cleared state: %v", b)
	}
}
