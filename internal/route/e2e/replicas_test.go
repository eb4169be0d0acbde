package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// fakeOpenAI answers chat completions with a fixed usage (10 in, 20 out)
// and counts its calls; with fail it answers 503.
type fakeOpenAI struct {
	*httptest.Server
	calls atomic.Int64
}

func newFakeOpenAI(t *testing.T, fail bool) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"message":"overloaded","type":"server_error"}}`)
			return
		}
		fmt.Fprintf(w, `{"id":"chatcmpl-%d","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"answer %d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`, n, n)
	}))
	t.Cleanup(f.Close)
	return f
}

type replica struct {
	url  string
	cmd  *exec.Cmd
	logs *testenv.Output
}

func startRoute(t *testing.T, name, config string, shared []string) *replica {
	t.Helper()
	addr := testenv.FreeTCP(t)
	args := append([]string{"serve", "route", "--route-listen", addr, "--metrics-listen", "off", "--data", t.TempDir(), "--config", config, "--log-level", "warn"}, shared...)
	cmd := exec.Command(testenv.OmniBinary(t), args...)
	r := &replica{url: "http://" + addr, cmd: cmd}
	r.logs, _ = testenv.Start(t, name, cmd)
	if !testenv.WaitOK(r.url+"/readyz", 30*time.Second) {
		t.Fatalf("%s never became ready", name)
	}
	return r
}

// until polls cond every 100 ms for at most 15 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, c *http.Client, method, url string, body any, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func chat(t *testing.T, r *replica, key, model string, temperature float64, hdr ...string) answer {
	t.Helper()
	return do(t, http.DefaultClient, "POST", r.url+"/v1/chat/completions", map[string]any{
		"model": model, "temperature": temperature, "max_tokens": 10,
		"messages": []map[string]any{{"role": "user", "content": "hello"}},
	}, append([]string{"Authorization", "Bearer " + key}, hdr...)...)
}

// TestTwoRouteReplicasShareLimitsBudgetsCacheAndBreakers runs two
// `omni serve route` processes on one PostgreSQL database and one Redis,
// used alternately as if behind one address: one rate limit, one budget,
// one cache, one idempotency window and one breaker state.
func TestTwoRouteReplicasShareLimitsBudgetsCacheAndBreakers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := testenv.Postgres(t)
	_, prefix := testenv.Redis(t)
	if dsn == "" || prefix == "" {
		return
	}
	good, bad := newFakeOpenAI(t, false), newFakeOpenAI(t, true)
	config := filepath.Join(t.TempDir(), "omni.yaml")
	conf := fmt.Sprintf(`route:
  initial_password: replica-dashboard-pw
  require_api_key: true
  providers:
    - id: oa
      type: openai
      base_url: %s/v1
      api_keys: [sk-upstream-good]
      models: [m]
    - id: bad
      type: openai
      base_url: %s/v1
      api_keys: [sk-upstream-bad]
      models: [m]
`, good.URL, bad.URL)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	masterKey := base64.StdEncoding.EncodeToString(auth.RandomBytes(32))
	shared := []string{"--database", dsn, "--redis", testenv.RedisURL(), "--redis-prefix", prefix, "--master-key", masterKey}
	a := startRoute(t, "replica A", config, shared)
	b := startRoute(t, "replica B", config, shared)
	replicas := []*replica{a, b}

	jar, _ := cookiejar.New(nil)
	mgmt := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if r := do(t, mgmt, "POST", a.url+"/api/auth/login", map[string]string{"password": "replica-dashboard-pw"}); r.status != 200 {
		t.Fatalf("login: %d %v", r.status, r.body)
	}
	newKey := func(body map[string]any) (id, raw string) {
		t.Helper()
		r := do(t, mgmt, "POST", a.url+"/api/keys", body)
		if r.status != 201 {
			t.Fatalf("create key: %d %v", r.status, r.body)
		}
		id, raw = r.body["id"].(string), r.body["key"].(string)
		// The key reaches B through the shared store (B refuses unknown
		// keys: require_api_key).
		deadline := time.Now().Add(15 * time.Second)
		for {
			m := do(t, http.DefaultClient, "GET", b.url+"/v1/models", nil, "Authorization", "Bearer "+raw)
			if m.status == 200 {
				return id, raw
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica B never accepted the new key: %d", m.status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// One rate limit: RPM 5 across both replicas. Start early in a minute
	// so the fixed window does not roll over mid-test.
	_, limited := newKey(map[string]any{"name": "limited", "rpm": 5})
	if s := time.Now().UTC().Second(); s > 45 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	passed, refused := 0, 0
	for i := range 10 {
		r := chat(t, replicas[i%2], limited, "oa/m", 0.5)
		switch r.status {
		case 200:
			passed++
		case 429:
			refused++
			if r.header.Get("Retry-After") == "" || !strings.Contains(fmt.Sprint(r.body), "rpm") {
				t.Fatalf("refusal without Retry-After or naming the limit: %v %v", r.header, r.body)
			}
		default:
			t.Fatalf("request %d: %d %v", i, r.status, r.body)
		}
	}
	if passed != 5 || refused != 5 {
		t.Fatalf("RPM 5 over two replicas let %d through and refused %d", passed, refused)
	}

	// One budget: $0.01 a token, 30 tokens a request ($0.30), $1 a day.
	budgetID, budgeted := newKey(map[string]any{"name": "budgeted"})
	if r := do(t, mgmt, "POST", a.url+"/api/usage/budget", map[string]any{"apiKeyId": budgetID, "dailyLimitUsd": 1}); r.status >= 300 {
		t.Fatalf("budget: %d %v", r.status, r.body)
	}
	if r := do(t, mgmt, "PUT", a.url+"/api/pricing", map[string]any{"pattern": "oa/*", "input": 10000, "output": 10000}); r.status >= 300 {
		t.Fatalf("pricing: %d %v", r.status, r.body)
	}
	// Replicas reload routing state when the store's epoch moves (every
	// 2 s): once B serves the new price, written after the budget, it
	// holds the budget too.
	until(t, "B reloads the price and the budget", func() bool {
		p := do(t, mgmt, "GET", b.url+"/api/pricing?model=oa/m", nil)
		return p.status == 200 && p.body["input"] == float64(10000)
	})
	ok, firstRefusal := 0, -1
	for i := range 8 {
		r := chat(t, replicas[i%2], budgeted, "oa/m", 0.5)

		switch {
		case r.status == 200 && firstRefusal < 0:
			ok++
		case r.status == 429 && strings.Contains(fmt.Sprint(r.body), "udget"):
			if firstRefusal < 0 {
				firstRefusal = i
			}
		default:
			t.Fatalf("budget request %d: %d %v (after a refusal at %d)", i, r.status, r.body, firstRefusal)
		}
	}
	if ok < 2 || ok > 4 || firstRefusal < 0 {
		t.Fatalf("a $1 budget at $0.30 a request allowed %d requests (first refusal at %d)", ok, firstRefusal)
	}
	st := do(t, mgmt, "GET", a.url+"/api/usage/budget", nil)
	if st.status != 200 || !strings.Contains(fmt.Sprint(st.body), budgetID) {
		t.Fatalf("budget status: %d %v", st.status, st.body)
	}

	// One cache and one idempotency window.
	_, plain := newKey(map[string]any{"name": "plain"})
	before := good.calls.Load()
	if r := chat(t, a, plain, "oa/m", 0); r.status != 200 || r.header.Get("X-OmniRoute-Cache") != "MISS" {
		t.Fatalf("first cacheable request: %d %q", r.status, r.header.Get("X-OmniRoute-Cache"))
	}
	if r := chat(t, b, plain, "oa/m", 0); r.status != 200 || r.header.Get("X-OmniRoute-Cache") != "HIT" {
		t.Fatalf("the same request on B: %d %q", r.status, r.header.Get("X-OmniRoute-Cache"))
	}
	if r := chat(t, a, plain, "oa/m", 0.9, "Idempotency-Key", "order-42"); r.status != 200 || r.header.Get("X-OmniRoute-Idempotent") != "" {
		t.Fatalf("idempotent first: %d", r.status)
	}
	if r := chat(t, b, plain, "oa/m", 0.9, "Idempotency-Key", "order-42"); r.status != 200 || r.header.Get("X-OmniRoute-Idempotent") != "true" {
		t.Fatalf("idempotent replay on B: %d %q", r.status, r.header.Get("X-OmniRoute-Idempotent"))
	}
	if n := good.calls.Load() - before; n != 2 {
		t.Fatalf("cache and idempotency over two replicas made %d upstream calls, want 2", n)
	}

	// One breaker: A sees the failing provider fail until its breaker
	// opens; B then refuses it without calling it.
	for i := 0; i < 10; i++ {
		if r := chat(t, a, plain, "bad/m", 0.5); r.status == 200 {
			t.Fatalf("the failing provider answered")
		}
	}
	until(t, "B sees the breaker open", func() bool {
		res := do(t, mgmt, "GET", b.url+"/api/resilience", nil)
		return strings.Contains(fmt.Sprint(res.body["breakers"]), "state:open")
	})
	calls := bad.calls.Load()
	if r := chat(t, b, plain, "bad/m", 0.5); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("B with the breaker open: %d %q %v", r.status, r.header.Get("Retry-After"), r.body)
	}
	if bad.calls.Load() != calls {
		t.Fatal("B called a provider whose breaker is open")
	}
}
