package resilience_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

var masterKey = []byte("0123456789abcdef0123456789abcdef")

const password = "correct horse battery"

// upstream is an OpenAI-compatible provider answering per API key: a
// scripted status (with Retry-After) or a completion.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	status map[string]int // key → status; absent: 200
	retry  string
	calls  map[string]int
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{status: map[string]int{}, calls: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		u.mu.Lock()
		u.calls[key]++
		st, retry := u.status[key], u.retry
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if st != 0 {
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			w.WriteHeader(st)
			io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
			return
		}
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, key)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) set(key string, status int) { u.mu.Lock(); u.status[key] = status; u.mu.Unlock() }

func (u *upstream) n(key string) int { u.mu.Lock(); defer u.mu.Unlock(); return u.calls[key] }

type gw struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
	clk *clock.Fake
	db  *sqldb.DB
	cfg config.Config
}

// newGateway runs the whole gateway (management API included) on a
// fresh SQLite database with a fake clock; provider p has keys k1, k2.
func newGateway(t *testing.T, up *upstream) *gw {
	t.Helper()
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	cfg.Route.Providers = []config.RouteProvider{{ID: "p", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k1", "k2"}, Models: []string{"m"}}}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g := &gw{t: t, clk: clock.NewFake(epoch), db: db, cfg: cfg}
	g.start()
	return g
}

// start opens the gateway (again) over the same database.
func (g *gw) start() {
	g.t.Helper()
	a, err := routeapp.Open(context.Background(), &g.cfg, routeapp.Deps{DB: g.db, MasterKey: masterKey, Clock: g.clk, Log: logging.Discard()})
	if err != nil {
		g.t.Fatal(err)
	}
	g.srv = httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	g.t.Cleanup(g.srv.Close)
	jar, _ := cookiejar.New(nil)
	g.c = &http.Client{Jar: jar}
	g.do(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password}, nil)
}

// do sends body (a string as is, else JSON), asserts the status and
// decodes the answer into out (when not nil).
func (g *gw) do(want int, method, path string, body, out any) http.Header {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, g.srv.URL+path, rd)
	if rd != nil || method != http.MethodGet && method != http.MethodDelete {
		req.Header.Set("Content-Type", "application/json") // as the dashboard sends every write
	}
	res, err := g.c.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		g.t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, b, want)
	}
	if res.StatusCode >= 400 {
		var eb struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error.Message == "" {
			g.t.Fatalf("%s %s: %d without a JSON error: %s", method, path, res.StatusCode, b)
		}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			g.t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return res.Header
}

func (g *gw) chat(want int) (string, http.Header) {
	g.t.Helper()
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	var dst any = &out
	if want != http.StatusOK {
		dst = nil
	}
	h := g.do(want, "POST", "/v1/chat/completions", map[string]any{"model": "p/m", "messages": []map[string]string{{"role": "user", "content": "hi"}}}, dst)
	if want != http.StatusOK {
		return "", h
	}
	return out.Choices[0].Message.Content, h
}

type rateLimits struct {
	Connections []struct {
		Provider            string `json:"provider"`
		Connection          string `json:"connection"`
		Cooling             bool   `json:"cooling"`
		RemainingMS         int64  `json:"remaining_ms"`
		ConsecutiveFailures int    `json:"consecutive_failures"`
		LastStatus          int    `json:"last_status"`
	} `json:"connections"`
	Breakers []struct {
		Provider string `json:"provider"`
		State    string `json:"state"`
	} `json:"breakers"`
}

func TestGatewayFallbackSkipsCooledConnection(t *testing.T) {
	up := newUpstream(t)
	up.set("k1", http.StatusTooManyRequests)
	up.retry = "10"
	g := newGateway(t, up)
	for i := 0; i < 4; i++ {
		if got, _ := g.chat(http.StatusOK); got != "hi from k2" {
			t.Fatalf("request %d answered %q", i, got)
		}
	}
	if up.n("k1") != 1 {
		t.Fatalf("the rate-limited key was called %d times in its cooldown, want once", up.n("k1"))
	}
	var rl rateLimits
	g.do(http.StatusOK, "GET", "/api/rate-limits", nil, &rl)
	if len(rl.Connections) != 1 || rl.Connections[0].Connection != "p#1" || !rl.Connections[0].Cooling ||
		rl.Connections[0].RemainingMS != 10_000 || rl.Connections[0].LastStatus != 429 || rl.Connections[0].ConsecutiveFailures != 1 {
		t.Fatalf("rate limits %+v, want p#1 cooling 10 s (Retry-After) after one 429", rl)
	}
	// Both keys rate limited: 429 with Retry-After until the earliest.
	up.set("k2", http.StatusTooManyRequests)
	up.retry = ""
	g.chat(http.StatusTooManyRequests) // k2 fails (3 s); k1 still cooling
	calls := up.n("k1") + up.n("k2")
	_, h := g.chat(http.StatusTooManyRequests)
	if h.Get("Retry-After") != "3" || up.n("k1")+up.n("k2") != calls {
		t.Fatalf("Retry-After %q, calls %d→%d: want 3 and no upstream call", h.Get("Retry-After"), calls, up.n("k1")+up.n("k2"))
	}
	// Cooldowns end: with both keys healthy again, both are used.
	up.set("k1", 0)
	up.set("k2", 0)
	g.clk.Advance(10 * time.Second)
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		got, _ := g.chat(http.StatusOK)
		seen[got] = true
	}
	if !seen["hi from k1"] || !seen["hi from k2"] {
		t.Fatalf("after the cooldowns ended only %v answered", seen)
	}
	g.do(http.StatusOK, "GET", "/api/rate-limits", nil, &rl)
	if len(rl.Connections) != 0 {
		t.Fatalf("successes did not reset the cooldowns: %+v", rl)
	}
}

func TestGatewayBreakerEndpoints(t *testing.T) {
	up := newUpstream(t)
	up.set("k1", http.StatusBadGateway)
	up.set("k2", http.StatusBadGateway)
	g := newGateway(t, up)
	g.do(http.StatusOK, "PATCH", "/api/resilience", map[string]any{"breaker_threshold": 2, "cooldown_base_ms": 10}, nil)
	g.chat(http.StatusBadGateway) // two failures: open
	var ov struct {
		Settings map[string]any `json:"settings"`
		Breakers []struct {
			Provider  string     `json:"provider"`
			State     string     `json:"state"`
			OpenUntil *time.Time `json:"open_until"`
		} `json:"breakers"`
	}
	g.do(http.StatusOK, "GET", "/api/resilience", nil, &ov)
	if len(ov.Breakers) != 1 || ov.Breakers[0].State != "open" || ov.Settings["breaker_threshold"] != float64(2) {
		t.Fatalf("overview %+v, want p open, threshold 2", ov)
	}
	g.clk.Advance(time.Second)
	calls := up.n("k1") + up.n("k2")
	_, h := g.chat(http.StatusServiceUnavailable)
	if h.Get("Retry-After") != "29" || up.n("k1")+up.n("k2") != calls {
		t.Fatalf("open breaker: Retry-After %q, upstream calls %d→%d", h.Get("Retry-After"), calls, up.n("k1")+up.n("k2"))
	}
	var reset struct {
		Reset int `json:"reset"`
	}
	g.do(http.StatusOK, "POST", "/api/resilience/reset", nil, &reset)
	if reset.Reset != 1 {
		t.Fatalf("reset cleared %d, want 1 breaker", reset.Reset)
	}
	up.set("k1", 0)
	up.set("k2", 0)
	if got, _ := g.chat(http.StatusOK); !strings.HasPrefix(got, "hi from") {
		t.Fatalf("after reset: %q", got)
	}
	g.do(http.StatusOK, "POST", "/api/resilience/reset", map[string]any{"all": true}, nil)
	g.do(http.StatusBadRequest, "POST", "/api/resilience/reset", map[string]any{"everything": true}, nil)

	// Settings: validation and persistence across a restart.
	for _, bad := range []any{
		map[string]any{"breaker_threshold": 0},
		map[string]any{"cooldown_base_ms": 5000, "cooldown_max_ms": 1000},
		map[string]any{"queue_size": -1},
		map[string]any{"queue_max_wait_ms": "2s"},
		map[string]any{"no_such_setting": 1},
		"{not json",
	} {
		g.do(http.StatusBadRequest, "PATCH", "/api/resilience", bad, nil)
	}
	g.do(http.StatusOK, "PATCH", "/api/resilience", map[string]any{"lockout_enabled": true, "queue_max_wait_ms": 1500}, nil)
	g.start()
	var cfg struct {
		Breaker map[string]any `json:"breaker"`
		Lockout map[string]any `json:"lockout"`
		Queue   map[string]any `json:"queue"`
	}
	g.do(http.StatusOK, "GET", "/api/rate-limit", nil, &cfg)
	if cfg.Breaker["threshold"] != float64(2) || cfg.Lockout["enabled"] != true || cfg.Queue["max_wait_ms"] != float64(1500) {
		t.Fatalf("settings after restart %+v", cfg)
	}
}

func TestGatewayModelCooldownEndpoints(t *testing.T) {
	up := newUpstream(t)
	g := newGateway(t, up)
	var lo struct {
		Enabled  bool `json:"enabled"`
		Lockouts []struct {
			Provider, Connection, Model string
			RemainingMS                 int64 `json:"remaining_ms"`
		} `json:"lockouts"`
	}
	g.do(http.StatusOK, "GET", "/api/resilience/model-cooldowns", nil, &lo)
	if lo.Enabled || len(lo.Lockouts) != 0 {
		t.Fatalf("fresh lockouts %+v", lo)
	}
	g.do(http.StatusOK, "PATCH", "/api/resilience", map[string]any{"lockout_enabled": true, "lockout_ms": 60000}, nil)
	up.set("k1", http.StatusNotFound)
	up.set("k2", http.StatusNotFound)
	g.chat(http.StatusNotFound) // a 404 is not retried: one connection locked
	g.clk.Advance(5 * time.Second)
	g.chat(http.StatusNotFound) // the other connection
	g.do(http.StatusOK, "GET", "/api/resilience/model-cooldowns", nil, &lo)
	if len(lo.Lockouts) != 2 || lo.Lockouts[0].RemainingMS != 55_000 || lo.Lockouts[1].RemainingMS != 60_000 || lo.Lockouts[0].Model != "m" {
		t.Fatalf("lockouts %+v, want two sorted by remaining time", lo)
	}
	_, h := g.chat(http.StatusServiceUnavailable)
	if h.Get("Retry-After") != "55" {
		t.Fatalf("locked model: Retry-After %q", h.Get("Retry-After"))
	}
	for _, bad := range []any{nil, map[string]any{}, map[string]any{"provider": "p"}, map[string]any{"model": "m"},
		map[string]any{"all": false}, map[string]any{"all": true, "provider": "p", "model": "m"}, "[]"} {
		g.do(http.StatusBadRequest, "DELETE", "/api/resilience/model-cooldowns", bad, nil)
	}
	var cleared struct {
		Cleared int `json:"cleared"`
	}
	g.do(http.StatusOK, "DELETE", "/api/resilience/model-cooldowns", map[string]any{"provider": "p", "model": "other"}, &cleared)
	if cleared.Cleared != 0 {
		t.Fatalf("cleared %d lockouts of another model", cleared.Cleared)
	}
	g.do(http.StatusOK, "DELETE", "/api/resilience/model-cooldowns", map[string]any{"provider": "p", "model": "m"}, &cleared)
	if cleared.Cleared != 2 {
		t.Fatalf("cleared %d, want 2", cleared.Cleared)
	}
	up.set("k1", 0)
	up.set("k2", 0)
	g.chat(http.StatusOK)
	g.do(http.StatusOK, "DELETE", "/api/resilience/model-cooldowns", map[string]any{"all": true}, nil)
}

func TestGatewayEndpointsNeedLogin(t *testing.T) {
	g := newGateway(t, newUpstream(t))
	g.c.Jar, _ = cookiejar.New(nil)
	for _, p := range []string{"GET /api/resilience", "GET /api/rate-limits", "GET /api/rate-limit", "GET /api/resilience/model-cooldowns"} {
		m, path, _ := strings.Cut(p, " ")
		g.do(http.StatusUnauthorized, m, path, nil, nil)
	}
	g.do(http.StatusUnauthorized, "POST", "/api/resilience/reset", nil, nil)
}
