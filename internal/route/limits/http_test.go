package limits_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

const password = "correct horse battery"

// env is a gateway over SQLite with two fake OpenAI providers, "a" and
// "b", each answering with 1000 prompt and 500 completion tokens, and a
// combo "team" trying a, then b.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	c      *http.Client // keeps the dashboard cookie
	served map[string]*atomic.Int64

	// newMoneyEnvWith's: the database, and ending the gateway's Run
	// (stopped is closed once it returned).
	db      *sqldb.DB
	stop    func()
	stopped chan struct{}
	app     *routeapp.App
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, served: map[string]*atomic.Int64{}}
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	cfg.Route.RequireAPIKey = true
	cfg.Route.APIKeys = []config.Secret{"config-key-1"}
	for _, name := range []string{"a", "b"} {
		n := &atomic.Int64{}
		e.served[name] = n
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}`, name)
		}))
		t.Cleanup(up.Close)
		cfg.Route.Providers = append(cfg.Route.Providers, config.RouteProvider{ID: name, Type: "openai", BaseURL: up.URL,
			APIKeys: []config.Secret{"sk-up"}, Models: []string{"m"}})
	}
	cfg.Route.Combos = []config.RouteCombo{{Name: "team", Strategy: "priority", Targets: []string{"a/m", "b/m"}}}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: []byte("0123456789abcdef0123456789abcdef"),
		Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	e.srv = httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(e.srv.Close)
	jar, _ := cookiejar.New(nil)
	e.c = &http.Client{Jar: jar}
	e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
	return e
}

// resp is a whole answer.
type resp = routetest.Resp

// do sends a request; body is a string (sent as is) or a value (JSON);
// hdr adds headers in pairs. A request carrying Authorization is sent
// without the dashboard cookie.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	c := e.c
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Authorization" {
			c = http.DefaultClient
		}
	}
	r := routetest.Send(e.t, c, method, e.srv.URL+path, body, hdr...)
	return r
}

func (e *env) want(status int, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.Status != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, status, r.Body)
	}
	return r
}

func bearer(k string) []string { return []string{"Authorization", "Bearer " + k} }

func chat(model string) map[string]any {
	return map[string]any{"model": model, "max_tokens": 500, "messages": []map[string]string{{"role": "user", "content": "hello"}}}
}

func (e *env) createKey(body map[string]any) (id, raw string) {
	e.t.Helper()
	r := e.want(http.StatusCreated, "POST", "/api/keys", body).Object(e.t)
	return r["id"].(string), r["key"].(string)
}

func TestKeyPolicyThroughTheGateway(t *testing.T) {
	e := newEnv(t)
	id, raw := e.createKey(map[string]any{"name": "ci", "allowed_providers": []string{"b"}, "rpm": 3})
	list := string(e.want(http.StatusOK, "GET", "/api/keys", nil).Body)
	if !strings.Contains(list, `"allowed_providers":["b"]`) || !strings.Contains(list, `"rpm":3`) {
		t.Fatalf("key list %s", list)
	}
	// A provider the key may not use: 403; the combo falls back to b.
	if r := e.do("POST", "/v1/chat/completions", chat("a/m"), bearer(raw)...); r.Status != http.StatusForbidden {
		t.Fatalf("a/m: %d %s", r.Status, r.Body)
	}
	r := e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("team"), bearer(raw)...)
	if !strings.Contains(string(r.Body), "hi from b") || e.served["a"].Load() != 0 {
		t.Fatalf("team answered %s (a served %d)", r.Body, e.served["a"].Load())
	}
	// rpm 3: the 403 was refused before counting, so two more pass.
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	r = e.want(http.StatusTooManyRequests, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	if !strings.Contains(string(r.Body), "rpm limit of 3 reached for key ci") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("429 %v %s", r.Header, r.Body)
	}
	// PATCH: allowed models instead of providers, no rpm.
	p := e.want(http.StatusOK, "PATCH", "/api/keys/"+id, map[string]any{"allowed_providers": []string{}, "allowed_models": []string{"a/*"}, "rpm": 0}).Object(t)
	if p["rpm"].(float64) != 0 || len(p["allowed_models"].([]any)) != 1 {
		t.Fatalf("patched %v", p)
	}
	if r := e.do("POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "not allowed") {
		t.Fatalf("b/m after patch: %d %s", r.Status, r.Body)
	}
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("a/m"), bearer(raw)...)
	e.want(http.StatusBadRequest, "PATCH", "/api/keys/"+id, map[string]any{"tpm": -1})
	e.want(http.StatusBadRequest, "PATCH", "/api/keys/"+id, map[string]any{"allowed_models": []string{"[bad"}})
	e.want(http.StatusNotFound, "PATCH", "/api/keys/key_nope", map[string]any{"rpm": 1})
	// Config keys carry no policy.
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer("config-key-1")...)
}

func TestBudgetSchema(t *testing.T) {
	e := newEnv(t)
	id, _ := e.createKey(map[string]any{"name": "ci"})
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"legacy shape", `{"keyId":"` + id + `","limit":5,"period":"daily"}`, 400},
		{"missing apiKeyId", `{"dailyLimitUsd":5}`, 400},
		{"all limits 0", `{"apiKeyId":"` + id + `","dailyLimitUsd":0,"weeklyLimitUsd":0,"monthlyLimitUsd":0}`, 400},
		{"no limit", `{"apiKeyId":"` + id + `"}`, 400},
		{"negative", `{"apiKeyId":"` + id + `","dailyLimitUsd":-1}`, 400},
		{"threshold 1.5", `{"apiKeyId":"` + id + `","dailyLimitUsd":5,"warningThreshold":1.5}`, 400},
		{"reset interval", `{"apiKeyId":"` + id + `","dailyLimitUsd":5,"resetInterval":"yearly"}`, 400},
		{"reset time 25:00", `{"apiKeyId":"` + id + `","dailyLimitUsd":5,"resetTime":"25:00"}`, 400},
		{"reset time 9:00", `{"apiKeyId":"` + id + `","dailyLimitUsd":5,"resetTime":"9:00"}`, 400},
		{"not json", `{`, 400},
		{"unknown key", `{"apiKeyId":"key_nope","dailyLimitUsd":5}`, 404},
		{"ok", `{"apiKeyId":"` + id + `","dailyLimitUsd":5,"weeklyLimitUsd":30,"monthlyLimitUsd":100,"warningThreshold":0.8,"resetInterval":"monthly","resetTime":"06:30"}`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/api/usage/budget", tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if tc.status != 200 && !strings.Contains(string(r.Body), `"error"`) {
				t.Fatalf("not a JSON error: %s", r.Body)
			}
		})
	}
	st := e.want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)
	bs := st["budgets"].([]any)
	if len(bs) != 1 {
		t.Fatalf("budgets %v", st)
	}
	b := bs[0].(map[string]any)
	if b["apiKeyId"] != id || b["monthlyLimitUsd"].(float64) != 100 || b["resetTime"] != "06:30" || b["period"] != "monthly" ||
		b["remainingUsd"].(float64) != 100 || len(b["periods"].([]any)) != 3 {
		t.Fatalf("budget status %v", b)
	}
}

func TestBudgetSpendAndExhaustion(t *testing.T) {
	e := newEnv(t)
	id, raw := e.createKey(map[string]any{"name": "ci"})
	// $1 per million input, $2 per million output: each answer (1000 in,
	// 500 out) costs $0.002.
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "b/m", "input": 1, "output": 2})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.005, "warningThreshold": 0.5})
	spent := func() (float64, bool) {
		b := e.want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
		return b["spentUsd"].(float64), b["warningReached"].(bool)
	}
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	if s, warn := spent(); s != 0.002 || warn {
		t.Fatalf("after one call spent %v (warning %v), want the real cost 0.002", s, warn)
	}
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	if s, warn := spent(); s != 0.006 || !warn {
		t.Fatalf("after three calls spent %v (warning %v)", s, warn)
	}
	r := e.want(http.StatusTooManyRequests, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	if !strings.Contains(string(r.Body), "Budget has been exceeded: daily budget of $0.01") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("refusal %v %s", r.Header, r.Body)
	}
	// An unpriced model is not free of the budget check.
	e.want(http.StatusTooManyRequests, "POST", "/v1/chat/completions", chat("a/m"), bearer(raw)...)
}

func TestRegisteredKeys(t *testing.T) {
	e := newEnv(t)
	_, issuer := e.createKey(map[string]any{"name": "automation", "scopes": []string{"issue"}})
	cfgKey := bearer(issuer)
	e.want(http.StatusUnauthorized, "GET", "/api/v1/registered-keys", nil, bearer("sk-omni-wrong")...)
	e.want(http.StatusBadRequest, "POST", "/api/v1/registered-keys", map[string]any{"name": ""}, cfgKey...)
	e.want(http.StatusBadRequest, "POST", "/api/v1/registered-keys", map[string]any{"name": "x", "expiresAt": "tomorrow"}, cfgKey...)
	e.want(http.StatusBadRequest, "POST", "/api/v1/registered-keys", map[string]any{"name": "x", "dailyBudget": -1}, cfgKey...)
	e.want(http.StatusOK, "PUT", "/api/settings/registered-keys", map[string]any{"maxKeysPerAccount": 1})

	q := e.want(http.StatusOK, "GET", "/v1/quotas/check?provider=b&accountId=acct-1", nil, cfgKey...).Object(t)
	if q["allowed"] != true || q["activeKeys"].(float64) != 0 || q["maxKeys"].(float64) != 1 {
		t.Fatalf("quota before %v", q)
	}
	r := e.want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "bot", "provider": "b", "accountId": "acct-1",
		"idempotencyKey": "issue-1", "expiresAt": "2099-01-01T00:00:00Z", "dailyBudget": 2.5, "hourlyBudget": 0.5}, cfgKey...).Object(t)
	id, raw := r["id"].(string), r["key"].(string)
	if !strings.HasPrefix(raw, "sk-omni-") || r["status"] != "active" || r["dailyBudget"].(float64) != 2.5 {
		t.Fatalf("issued %v", r)
	}
	// Same idempotency key: the same key, its raw value not shown again.
	again := e.want(http.StatusOK, "POST", "/api/v1/registered-keys", map[string]any{"name": "bot", "provider": "b", "accountId": "acct-1",
		"idempotencyKey": "issue-1"}, cfgKey...).Object(t)
	if again["id"] != id || again["key"] != nil {
		t.Fatalf("idempotent issue %v", again)
	}
	// Quota: one live key per account.
	e.want(http.StatusTooManyRequests, "POST", "/api/v1/registered-keys", map[string]any{"name": "bot2", "provider": "b", "accountId": "acct-1"}, cfgKey...)
	q = e.want(http.StatusOK, "GET", "/v1/quotas/check?provider=b&accountId=acct-1", nil, cfgKey...).Object(t)
	if q["allowed"] != false || q["activeKeys"].(float64) != 1 {
		t.Fatalf("quota after %v", q)
	}
	list := e.want(http.StatusOK, "GET", "/api/v1/registered-keys", nil, cfgKey...)
	if strings.Contains(string(list.Body), raw) || !strings.Contains(string(list.Body), raw[:12]) {
		t.Fatalf("list leaks the key or lacks its prefix: %s", list.Body)
	}
	got := e.want(http.StatusOK, "GET", "/api/v1/registered-keys/"+id, nil).Object(t) // dashboard login works too
	if got["key"] != nil || got["accountId"] != "acct-1" {
		t.Fatalf("get %v", got)
	}
	// The budget shows up with the others.
	if b := string(e.want(http.StatusOK, "GET", "/api/usage/budget", nil).Body); !strings.Contains(b, id) || !strings.Contains(b, `"hourlyLimitUsd":0.5`) {
		t.Fatalf("budgets %s", b)
	}
	// Usable on /v1, until revoked.
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	rv := e.want(http.StatusOK, "POST", "/api/v1/registered-keys/"+id+"/revoke", nil, cfgKey...).Object(t)
	if rv["status"] != "revoked" {
		t.Fatalf("revoked %v", rv)
	}
	e.want(http.StatusUnauthorized, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	e.want(http.StatusUnauthorized, "GET", "/api/v1/registered-keys", nil, bearer(raw)...) // revoked: no key at all
	// The account has room again; DELETE revokes too.
	r2 := e.want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "bot2", "provider": "b", "accountId": "acct-1"}, cfgKey...).Object(t)
	e.want(http.StatusOK, "DELETE", "/api/v1/registered-keys/"+r2["id"].(string), nil, cfgKey...)
	e.want(http.StatusUnauthorized, "POST", "/v1/chat/completions", chat("b/m"), bearer(r2["key"].(string))...)
	e.want(http.StatusNotFound, "GET", "/api/v1/registered-keys/key_nope", nil, cfgKey...)
	// Managed keys are not registered keys.
	mid, _ := e.createKey(map[string]any{"name": "ci"})
	e.want(http.StatusNotFound, "DELETE", "/api/v1/registered-keys/"+mid, nil, cfgKey...)
}

func TestRegisteredKeyExpires(t *testing.T) {
	e := newEnv(t)
	exp := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	_, issuer := e.createKey(map[string]any{"name": "automation", "scopes": []string{"issue"}})
	r := e.want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "short", "provider": "b", "accountId": "x",
		"expiresAt": exp}, bearer(issuer)...).Object(t)
	raw := r["key"].(string)
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	time.Sleep(time.Until(mustTime(t, exp)) + 50*time.Millisecond)
	e.want(http.StatusUnauthorized, "POST", "/v1/chat/completions", chat("b/m"), bearer(raw)...)
	got := e.want(http.StatusOK, "GET", "/api/v1/registered-keys/"+r["id"].(string), nil).Object(t)
	q := e.want(http.StatusOK, "GET", "/v1/quotas/check?provider=b&accountId=x", nil, bearer(issuer)...).Object(t)
	if got["status"] != "expired" || q["activeKeys"].(float64) != 0 {
		t.Fatalf("after expiry: key %v, quota %v", got, q)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
