package policies_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// dialects runs f on a fresh SQLite database and on a fresh PostgreSQL
// schema; dsn opens another connection to the same database.
func dialects(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, filepath.Join(t.TempDir(), "omni.db")) })
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		if dsn == "" {
			return
		}
		f(t, dsn)
	})
}

// gateway opens a whole gateway over the database at dsn, with its
// background loops running, logged in.
func gateway(t *testing.T, dsn string) *admintest.Env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = admintest.Password
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: admintest.MasterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	e := &admintest.Env{T: t, Srv: srv, DB: db, App: a, C: &http.Client{Jar: jar}}
	e.Run()
	e.Login()
	return e
}

// world is a gateway with providers a and b, each at its own fake
// upstream, declaring models m and gpt-x-preview.
type world struct {
	*admintest.Env
	a, b *admintest.Upstream
}

func newWorld(t *testing.T, dsn string) *world {
	e := gateway(t, dsn)
	w := &world{Env: e, a: admintest.NewUpstream(t, "a"), b: admintest.NewUpstream(t, "b")}
	for id, up := range map[string]*admintest.Upstream{"a": w.a, "b": w.b} {
		e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": "openai", "base_url": up.URL,
			"api_key": "sk-" + id, "models": []string{"m", "gpt-x-preview"}})
	}
	return w
}

func calls(u *admintest.Upstream) []string { _, m := u.Calls(); return m }

// policy creates a policy and returns its id.
func (w *world) policy(body map[string]any) string {
	w.T.Helper()
	return w.Want(http.StatusCreated, "POST", "/api/policies", body).Object(w.T)["id"].(string)
}

// refused sends a chat for model and asserts a 403 in OpenAI's error
// shape naming the policy.
func (w *world) refused(model, policy string, hdr ...string) {
	w.T.Helper()
	r := w.Want(http.StatusForbidden, "POST", "/v1/chat/completions", admintest.Chat(model), hdr...)
	var eb struct {
		Error struct {
			Message string `json:"message"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &eb); err != nil || !strings.Contains(eb.Error.Message, fmt.Sprintf("%q", policy)) {
		w.T.Fatalf("chat %s: 403 body %s does not name policy %q", model, r.Body, policy)
	}
}

// A combo [a/m, b/m] under a provider allowlist of [b] is sent only to b;
// a/m itself is refused naming the policy, without reaching a; the lists
// hide what the allowlist forbids. Deleting the policy lifts it.
func TestProviderAllowlist(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		w := newWorld(t, dsn)
		w.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "duo", "strategy": "priority", "targets": []string{"a/m", "b/m"}})
		w.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "only-a", "targets": []string{"a/m"}})
		if got := w.ChatText("duo"); got != "hi from a" {
			t.Fatalf("before the policy the combo's first target answers, got %q", got)
		}
		id := w.policy(map[string]any{"name": "EU only", "kind": "provider_allowlist", "providers": []string{"b"}})

		for range 3 {
			if got := w.ChatText("duo"); got != "hi from b" {
				t.Fatalf("combo under the allowlist: %q, want b's answer", got)
			}
		}
		if n := len(calls(w.a)); n != 1 {
			t.Fatalf("provider a was called %d times, want only the call before the policy", n)
		}
		w.refused("a/m", "EU only")
		w.refused("only-a", "EU only")
		if n := len(calls(w.a)); n != 1 {
			t.Fatalf("a refused model reached provider a (%d calls)", n)
		}
		// Streams and embeddings go through the same gate.
		w.Want(http.StatusForbidden, "POST", "/v1/chat/completions", map[string]any{"model": "a/m", "stream": true,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}})
		w.Want(http.StatusForbidden, "POST", "/v1/embeddings", map[string]any{"model": "a/m", "input": "hi"})
		// Another dialect answers in its own shape.
		r := w.Want(http.StatusForbidden, "POST", "/v1/messages", map[string]any{"model": "a/m", "max_tokens": 5,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}})
		if !strings.Contains(string(r.Body), `"type":"error"`) || !strings.Contains(string(r.Body), "EU only") {
			t.Fatalf("anthropic dialect refusal: %s", r.Body)
		}
		if n := len(calls(w.a)); n != 1 {
			t.Fatalf("provider a was called %d times", n)
		}

		ids := w.ModelIDs()
		if admintest.Contains(ids, "a/m") || admintest.Contains(ids, "only-a") || !admintest.Contains(ids, "b/m") || !admintest.Contains(ids, "duo") {
			t.Fatalf("/v1/models under the allowlist: %v", ids)
		}

		w.Want(http.StatusNoContent, "DELETE", "/api/policies/"+id, nil)
		if got := w.ChatText("a/m"); got != "hi from a" {
			t.Fatalf("after the policy was deleted: %q", got)
		}
		if !admintest.Contains(w.ModelIDs(), "a/m") {
			t.Fatal("a/m still hidden after the policy was deleted")
		}
	})
}

// key_providers for K1 → [a]: K1 reaches a and is refused b (and falls
// back past b in a combo); K2 and keyless requests are unaffected.
func TestKeyProviders(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		w := newWorld(t, dsn)
		id1, k1 := w.CreateKey(map[string]any{"name": "k1"})
		_, k2 := w.CreateKey(map[string]any{"name": "k2"})
		w.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "b-first", "targets": []string{"b/m", "a/m"}})
		w.policy(map[string]any{"name": "k1 to a", "kind": "key_providers", "keys": []string{id1}, "providers": []string{"a"}})

		if got := w.ChatText("a/m", admintest.Bearer(k1)...); got != "hi from a" {
			t.Fatalf("k1 to a: %q", got)
		}
		w.refused("b/m", "k1 to a", admintest.Bearer(k1)...)
		if got := w.ChatText("b-first", admintest.Bearer(k1)...); got != "hi from a" {
			t.Fatalf("k1 through a combo led by b: %q, want a's answer", got)
		}
		if n := len(calls(w.b)); n != 0 {
			t.Fatalf("k1's requests reached b %d times", n)
		}
		if got := w.ChatText("b/m", admintest.Bearer(k2)...); got != "hi from b" {
			t.Fatalf("k2 to b: %q", got)
		}
		if got := w.ChatText("b/m"); got != "hi from b" {
			t.Fatalf("keyless local client to b: %q", got)
		}
	})
}

// model_block "*-preview" refuses gpt-x-preview by name and behind a
// combo, without calling any upstream; a disabled policy has no effect,
// and enabling it again applies at once.
func TestModelBlock(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		w := newWorld(t, dsn)
		w.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "mix", "targets": []string{"a/gpt-x-preview", "b/m"}})
		w.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]any{"alias": "preview", "model": "a/gpt-x-preview"})
		id := w.policy(map[string]any{"name": "no previews", "kind": "model_block", "models": []string{"*-preview"}, "description": "unstable models"})

		w.refused("a/gpt-x-preview", "no previews")
		w.refused("gpt-x-preview", "no previews") // the name itself, whatever it would lead to
		w.refused("preview", "no previews")       // an alias leading to a blocked model
		if got := w.ChatText("mix"); got != "hi from b" {
			t.Fatalf("combo with a blocked first target: %q", got)
		}
		// Every modality and dialect passes the same gate.
		msgs := []map[string]string{{"role": "user", "content": "hi"}}
		for path, body := range map[string]any{
			"/v1/messages":           map[string]any{"model": "a/gpt-x-preview", "max_tokens": 5, "messages": msgs},
			"/v1/responses":          map[string]any{"model": "a/gpt-x-preview", "input": "hi"},
			"/api/chat":              map[string]any{"model": "a/gpt-x-preview", "messages": msgs},
			"/v1/embeddings":         map[string]any{"model": "a/gpt-x-preview", "input": "hi"},
			"/v1/rerank":             map[string]any{"model": "a/gpt-x-preview", "query": "q", "documents": []string{"d"}},
			"/v1/moderations":        map[string]any{"model": "a/gpt-x-preview", "input": "hi"},
			"/v1/images/generations": map[string]any{"model": "a/gpt-x-preview", "prompt": "a cat"},
		} {
			r := w.Do("POST", path, body)
			if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "no previews") {
				t.Errorf("%s: %d %s, want 403 naming the policy", path, r.Status, r.Body)
			}
		}
		if n := len(calls(w.a)); n != 0 {
			t.Fatalf("a blocked model reached the upstream (%d calls)", n)
		}
		if admintest.Contains(w.ModelIDs(), "a/gpt-x-preview") {
			t.Fatal("/v1/models lists a blocked model")
		}

		r := w.Want(http.StatusOK, "PUT", "/api/policies/"+id, map[string]any{"enabled": false}).Object(t)
		if r["enabled"] != false || r["name"] != "no previews" || r["description"] != "unstable models" {
			t.Fatalf("PUT answer %v", r)
		}
		if got := w.ChatText("a/gpt-x-preview"); got != "hi from a" {
			t.Fatalf("disabled policy: %q", got)
		}
		w.Want(http.StatusOK, "PUT", "/api/policies/"+id, map[string]any{"enabled": true})
		w.refused("a/gpt-x-preview", "no previews")
	})
}

// Bad input is a 400 naming the field, and nothing is stored.
func TestBadInput(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "omni.db"))
	many := make([]string, 257)
	for i := range many {
		many[i] = fmt.Sprintf("m%d", i)
	}
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "x", "kind": "nope", "providers": []string{"a"}}, `"kind"`},
		{map[string]any{"name": "x", "providers": []string{"a"}}, `"kind"`},
		{map[string]any{"kind": "provider_allowlist", "providers": []string{"a"}}, `"name"`},
		{map[string]any{"name": strings.Repeat("n", 129), "kind": "provider_allowlist", "providers": []string{"a"}}, `"name"`},
		{map[string]any{"name": "x", "kind": "provider_allowlist"}, `"providers"`},
		{map[string]any{"name": "x", "kind": "provider_allowlist", "providers": []string{}}, `"providers"`},
		{map[string]any{"name": "x", "kind": "provider_allowlist", "providers": []string{"zzz"}}, `"providers[0]"`},
		{map[string]any{"name": "x", "kind": "key_providers", "providers": []string{"a"}}, `"keys"`},
		{map[string]any{"name": "x", "kind": "key_providers", "keys": []string{"k"}}, `"providers"`},
		{map[string]any{"name": "x", "kind": "model_block"}, `"models"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": []string{"[a-"}}, `"models[0]"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": []string{""}}, `"models[0]"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": many}, `"models"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": []string{"m"}, "providers": []string{"a"}}, `"providers"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": []string{"m"}, "description": strings.Repeat("d", 501)}, `"description"`},
		{map[string]any{"name": "x", "kind": "model_block", "models": "m"}, `"models"`},
		{`{"name": "x",`, "JSON"},
		{`[]`, "object"},
	} {
		msg := w.WantError(http.StatusBadRequest, "POST", "/api/policies", c.body)
		if !strings.Contains(msg, c.field) {
			t.Errorf("body %v: error %q does not name %s", c.body, msg, c.field)
		}
	}
	if got := w.Want(http.StatusOK, "GET", "/api/policies", nil).Object(t)["policies"].([]any); len(got) != 0 {
		t.Fatalf("bad input stored policies: %v", got)
	}

	id := w.policy(map[string]any{"name": "x", "kind": "model_block", "models": []string{"m"}})
	w.WantError(http.StatusConflict, "POST", "/api/policies", map[string]any{"name": "x", "kind": "model_block", "models": []string{"m2"}})
	w.WantError(http.StatusBadRequest, "PUT", "/api/policies/"+id, map[string]any{"kind": "provider_allowlist"})
	w.WantError(http.StatusNotFound, "PUT", "/api/policies/pol_none", map[string]any{"enabled": false})
	w.WantError(http.StatusNotFound, "DELETE", "/api/policies/pol_none", nil)
	w.WantError(http.StatusNotFound, "GET", "/api/policies/pol_none", nil)
	got := w.Want(http.StatusOK, "GET", "/api/policies/"+id, nil).Object(t)
	if got["kind"] != "model_block" || got["enabled"] != true {
		t.Fatalf("a refused update changed the policy: %v", got)
	}
	// A blocked request was never stored into the upstreams' view.
	if len(calls(w.a))+len(calls(w.b)) != 0 {
		t.Fatal("validation reached an upstream")
	}
}

// At most MaxPolicies policies are stored.
func TestPolicyCap(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "omni.db"))
	for i := range 256 {
		w.policy(map[string]any{"name": fmt.Sprintf("p%03d", i), "kind": "model_block", "models": []string{fmt.Sprintf("m%d", i)}, "enabled": false})
	}
	msg := w.WantError(http.StatusBadRequest, "POST", "/api/policies", map[string]any{"name": "one more", "kind": "model_block", "models": []string{"x"}})
	if !strings.Contains(msg, "256") {
		t.Fatalf("cap refusal %q", msg)
	}
	if n := len(w.Want(http.StatusOK, "GET", "/api/policies", nil).Object(t)["policies"].([]any)); n != 256 {
		t.Fatalf("%d policies listed", n)
	}
}

// The management routes are the operator's: an anonymous client, the
// holder of a gateway key and a web page in the operator's browser can
// neither read nor change policies.
func TestPoliciesAttackers(t *testing.T) {
	w := newWorld(t, filepath.Join(t.TempDir(), "omni.db"))
	_, key := w.CreateKey(map[string]any{"name": "k"})
	body := map[string]any{"name": "open all", "kind": "provider_allowlist", "providers": []string{"a"}}
	anon := &http.Client{}
	for _, hdr := range [][]string{nil, admintest.Bearer(key), admintest.Remote} {
		for _, m := range []string{"GET", "POST"} {
			var b any
			if m == "POST" {
				b = body
			}
			want := http.StatusUnauthorized
			if len(hdr) > 0 && hdr[0] == "Authorization" {
				want = http.StatusForbidden // a gateway key without the manage scope
			}
			if r := sendWith(t, anon, w.Srv.URL, m, b, hdr...); r != want {
				t.Errorf("%s /api/policies without a session (%v): %d, want %d", m, hdr, r, want)
			}
		}
	}
	for _, hdr := range [][]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		w.WantError(http.StatusForbidden, "POST", "/api/policies", body, hdr...)
		w.WantError(http.StatusForbidden, "GET", "/api/policies", nil, hdr...)
	}
	w.WantError(http.StatusUnsupportedMediaType, "POST", "/api/policies", `{"name":"x","kind":"model_block","models":["m"]}`, "Content-Type", "text/plain")
	if got := w.Want(http.StatusOK, "GET", "/api/policies", nil).Object(t)["policies"].([]any); len(got) != 0 {
		t.Fatalf("an attacker stored policies: %v", got)
	}
}

func sendWith(t *testing.T, c *http.Client, base, method string, body any, hdr ...string) int {
	t.Helper()
	e := &admintest.Env{T: t, Srv: &httptest.Server{URL: base}, C: c}
	return e.Do(method, "/api/policies", body, hdr...).Status
}

// A change made through one gateway applies on a second gateway sharing
// the database, within its sync interval.
func TestReplicasFollow(t *testing.T) {
	dialects(t, func(t *testing.T, dsn string) {
		w1 := newWorld(t, dsn)
		w2 := &world{Env: gateway(t, dsn), a: w1.a, b: w1.b}
		if got := w2.ChatText("a/m"); got != "hi from a" {
			t.Fatalf("second gateway before the policy: %q", got)
		}
		id := w1.policy(map[string]any{"name": "b only", "kind": "provider_allowlist", "providers": []string{"b"}})
		testenv.Eventually(t, "the second gateway applies the new policy", func() bool {
			return w2.Do("POST", "/v1/chat/completions", admintest.Chat("a/m")).Status == http.StatusForbidden
		})
		w2.refused("a/m", "b only")
		if n := len(w2.Want(http.StatusOK, "GET", "/api/policies", nil).Object(t)["policies"].([]any)); n != 1 {
			t.Fatalf("second gateway lists %d policies", n)
		}
		w2.Want(http.StatusNoContent, "DELETE", "/api/policies/"+id, nil)
		testenv.Eventually(t, "the first gateway drops the deleted policy", func() bool {
			return w1.Do("POST", "/v1/chat/completions", admintest.Chat("a/m")).Status == http.StatusOK
		})
	})
}
