package providers_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/config"
)

func TestProviderLifecycle(t *testing.T) {
	up1, up2 := newUpstream(t, "one"), newUpstream(t, "two")
	e := newEnv(t, nil)
	e.Login()
	const secret = "sk-test-upstream-secret-1234"
	r := e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{
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
	if err := e.DB.QueryRow(context.Background(), `SELECT api_key FROM route_credentials WHERE provider_id = ?`, "acme").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, secret) || strings.Contains(stored, "upstream-secret") || !strings.HasPrefix(stored, "v1:") {
		t.Fatalf("credential stored as %q", stored)
	}
	if g := e.Want(http.StatusOK, "GET", "/api/providers/acme", nil); strings.Contains(string(g.Body), secret) || !strings.Contains(string(g.Body), "sk-…1234") {
		t.Fatalf("GET provider = %s", g.Body)
	}
	if g := e.Want(http.StatusOK, "GET", "/api/providers", nil); strings.Contains(string(g.Body), secret) || !strings.Contains(string(g.Body), `"acme"`) {
		t.Fatalf("GET providers = %s", g.Body)
	}

	// Traffic reaches the upstream with the provider's own key.
	if got := e.ChatText("acme/gpt-4o"); got != "hi from one" {
		t.Fatalf("chat answered %q", got)
	}
	auths, models := up1.Calls()
	if len(auths) != 1 || auths[0] != "Bearer "+secret || models[0] != "gpt-4o" {
		t.Fatalf("upstream saw auth %q models %q", auths, models)
	}
	if ids := e.ModelIDs(); !contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models = %v", ids)
	}

	// A new base URL moves traffic at once; credentials are kept when the
	// request says so (TestProviderMoveNeedsItsCredentialsAgain).
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"base_url": up2.URL, "keep_credentials": true})
	if got := e.ChatText("acme/gpt-4o"); got != "hi from two" {
		t.Fatalf("after PUT chat answered %q", got)
	}
	if auths, _ := up2.Calls(); len(auths) != 1 || auths[0] != "Bearer "+secret {
		t.Fatalf("second upstream saw %q", auths)
	}
	// Replacing the credentials rotates the key.
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"api_keys": []any{"sk-rotated-key-0000", map[string]any{"api_key": "sk-second-key-5555", "label": "b"}}})
	e.ChatText("acme/gpt-4o")
	e.ChatText("acme/gpt-4o")
	auths, _ = up2.Calls()
	if !contains(auths[1:], "Bearer sk-rotated-key-0000") || !contains(auths[1:], "Bearer sk-second-key-5555") {
		t.Fatalf("after rotation upstream saw %q (want both keys round-robin)", auths)
	}
	// Disabled: not routable, not listed.
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"enabled": false})
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("acme/gpt-4o"))
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"enabled": true})
	e.ChatText("acme/gpt-4o")

	e.Want(http.StatusNoContent, "DELETE", "/api/providers/acme", nil)
	e.WantError(http.StatusNotFound, "POST", "/v1/chat/completions", chat("acme/gpt-4o"))
	e.WantError(http.StatusNotFound, "GET", "/api/providers/acme", nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/providers/acme", nil)
	if ids := e.ModelIDs(); contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models still lists a deleted provider: %v", ids)
	}
}

func TestConfigProvidersAreReadOnly(t *testing.T) {
	up := newUpstream(t, "cfg")
	e := newEnv(t, func(c *config.Config) {
		c.Route.Providers = []config.RouteProvider{{ID: "declared", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-config-secret-4321"}, Models: []string{"gpt-4o"}}}
		c.Route.Aliases = map[string]string{"cfg-alias": "declared/gpt-4o"}
		c.Route.Combos = []config.RouteCombo{{Name: "cfg-combo", Targets: []string{"declared/gpt-4o"}}}
	})
	e.Login()
	r := e.Want(http.StatusOK, "GET", "/api/providers/declared", nil)
	if v := r.Object(t); v["source"] != "config" || strings.Contains(string(r.Body), "sk-config-secret-4321") || !strings.Contains(string(r.Body), "sk-…4321") {
		t.Fatalf("config provider = %s", r.Body)
	}
	e.WantError(http.StatusConflict, "PUT", "/api/providers/declared", map[string]any{"base_url": "http://example.com"})
	e.WantError(http.StatusConflict, "DELETE", "/api/providers/declared", nil)
	e.WantError(http.StatusConflict, "POST", "/api/providers", map[string]any{"id": "declared", "type": "openai"})
}

func TestProviderModelsAndChecks(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL, "api_key": "sk-acme-key-2222", "models": []string{"gpt-4o"}})

	e.Want(http.StatusCreated, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small", "kind": "embedding"})
	e.WantError(http.StatusConflict, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o"})
	e.WantError(http.StatusBadRequest, "POST", "/api/provider-models", map[string]any{"provider": "acme", "model": "x", "kind": "hologram"})
	e.WantError(http.StatusNotFound, "POST", "/api/provider-models", map[string]any{"provider": "ghost", "model": "x"})
	if ids := e.ModelIDs(); !contains(ids, "acme/text-embedding-3-small") || !contains(ids, "acme/gpt-4o") {
		t.Fatalf("/v1/models = %v", ids)
	}
	// Hiding a declared model and a custom one removes them from the list.
	e.Want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o", "hidden": true})
	e.Want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small", "hidden": true})
	if ids := e.ModelIDs(); contains(ids, "acme/gpt-4o") || contains(ids, "acme/text-embedding-3-small") {
		t.Fatalf("hidden models listed: %v", ids)
	}
	list := e.Want(http.StatusOK, "GET", "/api/provider-models?provider=acme", nil)
	if !strings.Contains(string(list.Body), `"hidden":true`) || !strings.Contains(string(list.Body), `"kind":"embedding"`) {
		t.Fatalf("provider models = %s", list.Body)
	}
	e.Want(http.StatusOK, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "gpt-4o", "hidden": false})
	e.Want(http.StatusNoContent, "DELETE", "/api/provider-models?provider=acme&model=text-embedding-3-small", nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/provider-models", map[string]any{"provider": "acme", "model": "text-embedding-3-small"})
	e.WantError(http.StatusNotFound, "PATCH", "/api/provider-models", map[string]any{"provider": "acme", "model": "never-added", "hidden": true})
	if ids := e.ModelIDs(); !contains(ids, "acme/gpt-4o") {
		t.Fatalf("shown again: %v", ids)
	}

	// Live checks answer ok/latency/error, never a 5xx.
	v := e.Want(http.StatusOK, "POST", "/api/providers/acme/test", nil).Object(t)
	if v["ok"] != true || v["latency_ms"] == nil {
		t.Fatalf("test = %v", v)
	}
	up.SetStatus(http.StatusUnauthorized)
	v = e.Want(http.StatusOK, "POST", "/api/providers/acme/test", map[string]string{"model": "gpt-4o"}).Object(t)
	if v["ok"] != false || !strings.Contains(v["error"].(string), "401") {
		t.Fatalf("failing test = %v", v)
	}
	up.SetStatus(http.StatusOK)
	if ms := e.Want(http.StatusOK, "GET", "/api/providers/acme/models", nil).Object(t); ms["source"] != "configured" || len(ms["models"].([]any)) != 1 {
		t.Fatalf("provider models = %v", ms)
	}
	e.WantError(http.StatusNotFound, "POST", "/api/providers/ghost/test", nil)

	// Validation checks an unsaved config and stores nothing.
	v = e.Want(http.StatusOK, "POST", "/api/providers/validate", map[string]any{"type": "openai", "base_url": up.URL, "api_key": "sk-unsaved-3333", "model": "gpt-4o"}).Object(t)
	if v["ok"] != true {
		t.Fatalf("validate = %v", v)
	}
	e.WantError(http.StatusBadRequest, "POST", "/api/providers/validate", map[string]any{"type": "nope"})
	if all := e.Want(http.StatusOK, "GET", "/api/providers", nil); strings.Contains(string(all.Body), `"validate"`) {
		t.Fatalf("validate stored something: %s", all.Body)
	}
	auths, _ := up.Calls()
	if !contains(auths, "Bearer sk-unsaved-3333") {
		t.Fatalf("validate did not call the upstream with its key: %q", auths)
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
		{400, "POST", "/api/provider-models", map[string]any{"provider": "acme"}},
		{400, "DELETE", "/api/provider-models", nil},
		{404, "GET", "/api/provider-models?provider=ghost", nil},
	}
	for _, c := range cases {
		e.WantError(c.status, c.method, c.path, c.body)
	}
	// Credentials can be added and removed one by one.
	cr := e.Want(http.StatusCreated, "POST", "/api/providers/acme/credentials", map[string]any{"api_key": "sk-extra-key-7777", "label": "extra"}).Object(t)
	if cr["key"] != "sk-…7777" {
		t.Fatalf("credential = %v", cr)
	}
	e.Want(http.StatusNoContent, "DELETE", "/api/providers/acme/credentials/"+cr["id"].(string), nil)
}

// Changing a provider forgets what its old configuration taught the
// resilience layers; other providers keep their state.
func TestProviderChangeClearsItsResilienceState(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	up := newUpstream(t, "acme")
	for _, id := range []string{"acme", "other"} {
		// Two connections each: a provider's only connection is never cooled.
		e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": "openai", "base_url": up.URL,
			"api_keys": []string{"sk-" + id + "-key-1111", "sk-" + id + "-key-2222"}})
	}
	tr := e.App.Resilience
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
			e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"api_keys": []string{"sk-acme-rotated-3333", "sk-acme-rotated-4444"}})
		}},
		{"add credential", func() {
			e.Want(http.StatusCreated, "POST", "/api/providers/acme/credentials", map[string]any{"api_key": "sk-acme-third-3333"})
		}},
		{"delete", func() { e.Want(http.StatusNoContent, "DELETE", "/api/providers/acme", nil) }},
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
	h := e.Want(http.StatusOK, "GET", "/api/monitoring/health", nil).Object(t)
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
	h = e.Want(http.StatusOK, "GET", "/api/monitoring/health", nil).Object(t)
	if h["openBreakers"] != 1.0 || !strings.Contains(fmt.Sprint(h["breakers"]), "state:open") || !strings.Contains(fmt.Sprint(h["breakers"]), "openUntil:") {
		t.Fatalf("tripped breaker not in health: %v", h)
	}
	// A refused change clears nothing.
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL,
		"api_keys": []string{"sk-acme-key-5555", "sk-acme-key-6666"}})
	fail()
	e.WantError(http.StatusBadRequest, "PUT", "/api/providers/acme", map[string]any{"id": "renamed"})
	if b, _ := state(); !slices.Equal(b, []string{"acme", "other"}) {
		t.Fatalf("refused update cleared state: %v", b)
	}
}
