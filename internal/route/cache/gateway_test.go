package cache_test

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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/api"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

const (
	gatewayKey = "sk-gateway-test-key"
	password   = "correct horse battery"
)

// upstream is a fake OpenAI provider that numbers its answers.
type upstream struct {
	*httptest.Server
	n     atomic.Int64
	delay time.Duration
	fail  atomic.Int64 // a status to answer with instead
}

func newUpstream(t *testing.T, delay time.Duration) *upstream {
	u := &upstream{delay: delay}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model    string `json:"model"`
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		n := u.n.Add(1)
		finish := "stop" // the prompt names another finish reason
		if len(body.Messages) > 0 && strings.HasPrefix(body.Messages[0].Content, "finish:") {
			finish = strings.TrimPrefix(body.Messages[0].Content, "finish:")
		}
		time.Sleep(u.delay)
		w.Header().Set("Content-Type", "application/json")
		if st := u.fail.Load(); st != 0 {
			w.WriteHeader(int(st))
			io.WriteString(w, `{"error":{"message":"upstream refused","type":"invalid_request_error"}}`)
			return
		}
		fmt.Fprintf(w, `{"id":"c%d","object":"chat.completion","created":1700000000,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"answer number %d"},"finish_reason":%q}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}`, n, body.Model, n, finish)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) calls() int { return int(u.n.Load()) }

type gateway struct {
	t   *testing.T
	srv *httptest.Server
	web *http.Client // management, with cookies
	sdk openai.Client
}

type gwOptions struct {
	clk    clock.Clock
	redis  *redis.Client
	prefix string
}

func newGateway(t *testing.T, up *upstream, o gwOptions) *gateway {
	t.Helper()
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	cfg.Route.RequireAPIKey = true
	cfg.Route.APIKeys = []config.Secret{gatewayKey}
	cfg.Route.Providers = []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if o.clk == nil {
		o.clk = clock.Real{}
	}
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: masterKey, Clock: o.clk,
		Redis: o.redis, RedisPrefix: o.prefix, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	g := &gateway{t: t, srv: srv, web: &http.Client{Jar: jar},
		sdk: openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey(gatewayKey), option.WithMaxRetries(0))}
	return g
}

func params(temp float64, text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: "oa/gpt-4o", Temperature: openai.Float(temp),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}}
}

// chat sends a plain request and returns the answer's text and headers.
func (g *gateway) chat(p openai.ChatCompletionNewParams, opts ...option.RequestOption) (string, http.Header, error) {
	var raw *http.Response
	c, err := g.sdk.Chat.Completions.New(context.Background(), p, append(opts, option.WithResponseInto(&raw))...)
	if err != nil {
		return "", nil, err
	}
	if len(c.Choices) != 1 {
		return "", raw.Header, fmt.Errorf("%d choices", len(c.Choices))
	}
	return c.Choices[0].Message.Content, raw.Header, nil
}

func (g *gateway) mustChat(p openai.ChatCompletionNewParams, opts ...option.RequestOption) (string, http.Header) {
	g.t.Helper()
	text, h, err := g.chat(p, opts...)
	if err != nil {
		g.t.Fatal(err)
	}
	return text, h
}

// manage sends a management request (logging in first) and returns the
// status and body.
func (g *gateway) manage(method, path string) (int, []byte) {
	g.t.Helper()
	do := func(method, path string, body []byte) (int, []byte) {
		req, _ := http.NewRequest(method, g.srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := g.web.Do(req)
		if err != nil {
			g.t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if st, b := do("POST", "/api/auth/login", []byte(`{"password":"`+password+`"}`)); st != 200 {
		g.t.Fatalf("login: %d %s", st, b)
	}
	return do(method, path, nil)
}

func TestGatewayCacheHit(t *testing.T) {
	up := newUpstream(t, 0)
	g := newGateway(t, up, gwOptions{})
	first, h1 := g.mustChat(params(0, "hi"))
	second, h2 := g.mustChat(params(0, "hi"))
	if up.calls() != 1 || h1.Get(api.HeaderCache) != "MISS" || h2.Get(api.HeaderCache) != "HIT" || first != second || first != "answer number 1" {
		t.Fatalf("calls %d, headers %q %q, answers %q %q", up.calls(), h1.Get(api.HeaderCache), h2.Get(api.HeaderCache), first, second)
	}

	// The hit replayed as a stream to a streaming client.
	var raw *http.Response
	st := g.sdk.Chat.Completions.NewStreaming(context.Background(), params(0, "hi"), option.WithResponseInto(&raw))
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(api.HeaderCache) != "HIT" || up.calls() != 1 || len(acc.Choices) != 1 ||
		acc.Choices[0].Message.Content != first || acc.Choices[0].FinishReason != "stop" {
		t.Fatalf("streamed hit: %q, calls %d, %+v", raw.Header.Get(api.HeaderCache), up.calls(), acc.Choices)
	}

	// Another prompt, another temperature, or an opt-out miss.
	g.mustChat(params(0, "other"))
	g.mustChat(params(0.7, "hi"))
	_, h := g.mustChat(params(0, "hi"), option.WithHeader(api.HeaderNoCache, "true"))
	if up.calls() != 4 || h.Get(api.HeaderCache) != "" {
		t.Fatalf("calls %d, no-cache header %q", up.calls(), h.Get(api.HeaderCache))
	}

	// An answer cut at max_tokens is cached (max_tokens is in the key); a
	// content-filter stop is not.
	for _, c := range []struct {
		prompt string
		calls  int
	}{{"finish:length", 5}, {"finish:length", 5}, {"finish:content_filter", 6}, {"finish:content_filter", 7}} {
		g.mustChat(params(0, c.prompt))
		if up.calls() != c.calls {
			t.Fatalf("%s: calls %d, want %d", c.prompt, up.calls(), c.calls)
		}
	}
	if _, err := g.sdk.Chat.Completions.New(context.Background(), params(0, "finish:length")); err != nil {
		t.Fatal(err)
	}
	if up.calls() != 7 {
		t.Fatalf("calls %d", up.calls())
	}

	// Stats: exactly the documented keys, then DELETE clears.
	code, body := g.manage("GET", "/api/cache/stats")
	if code != 200 {
		t.Fatalf("stats: %d %s", code, body)
	}
	var stats map[string]map[string]any
	if err := json.Unmarshal(body, &stats); err != nil {
		t.Fatal(err)
	}
	for section, want := range map[string][]string{
		"semanticCache": {"memorySize", "memoryMaxSize", "dbSize", "hitRate"},
		"idempotency":   {"activeKeys", "windowMs"},
	} {
		for _, k := range want {
			if _, ok := stats[section][k].(float64); !ok {
				t.Fatalf("stats %s.%s missing or not a number: %s", section, k, body)
			}
		}
	}
	sc := stats["semanticCache"]
	// Entries: hi, other, finish:length; 4 hits (hi, streamed hi, length
	// twice) of 9 lookups.
	if sc["memorySize"] != 3.0 || sc["dbSize"] != 3.0 || sc["memoryMaxSize"] != 500.0 || sc["hitRate"] != 4.0/9 ||
		stats["idempotency"]["windowMs"] != 5000.0 {
		t.Fatalf("stats %s", body)
	}
	code, body = g.manage("DELETE", "/api/cache/stats")
	if code != 200 || !strings.Contains(string(body), `"memory":3`) || !strings.Contains(string(body), `"db":3`) {
		t.Fatalf("clear: %d %s", code, body)
	}
	if _, h := g.mustChat(params(0, "hi")); h.Get(api.HeaderCache) != "MISS" || up.calls() != 8 {
		t.Fatalf("after clear: %q, calls %d", h.Get(api.HeaderCache), up.calls())
	}
	_, body = g.manage("GET", "/api/cache/stats")
	if !strings.Contains(string(body), `"memorySize":1`) || !strings.Contains(string(body), `"dbSize":1`) {
		t.Fatalf("stats after clear: %s", body)
	}

	// Without a login the stats are refused.
	res, err := http.Get(g.srv.URL + "/api/cache/stats")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous stats: %d", res.StatusCode)
	}
}

func TestGatewayCacheSurvivesRestart(t *testing.T) {
	up := newUpstream(t, 0)
	path := filepath.Join(t.TempDir(), "omni.db")
	open := func() *gateway {
		cfg := config.Default()
		cfg.Route.InitialPassword = password
		cfg.Route.APIKeys = []config.Secret{gatewayKey} // the SDK sends a key, so it must be a valid one
		cfg.Route.Providers = []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}
		db, err := sqldb.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: masterKey, Log: logging.Discard()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(a.Handler())
		t.Cleanup(srv.Close)
		return &gateway{t: t, srv: srv, sdk: openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey(gatewayKey), option.WithMaxRetries(0))}
	}
	a := open()
	first, _ := a.mustChat(params(0, "persist"))
	b := open() // a second replica (or a restart) on the same database
	second, h := b.mustChat(params(0, "persist"))
	if h.Get(api.HeaderCache) != "HIT" || second != first || up.calls() != 1 {
		t.Fatalf("second replica: %q %q %q, calls %d", h.Get(api.HeaderCache), first, second, up.calls())
	}
}

func TestGatewayIdempotentReplay(t *testing.T) {
	up := newUpstream(t, 0)
	clk := clock.NewFake(time.Now())
	g := newGateway(t, up, gwOptions{clk: clk})
	key := option.WithHeader("Idempotency-Key", "order-1")
	a, ha := g.mustChat(params(0.9, "hi"), key)
	clk.Advance(4 * time.Second)
	b, hb := g.mustChat(params(0.9, "hi"), key)
	if up.calls() != 1 || a != b || ha.Get(api.HeaderIdempotent) != "" || hb.Get(api.HeaderIdempotent) != "true" {
		t.Fatalf("replay: calls %d, %q %q, headers %q %q", up.calls(), a, b, ha.Get(api.HeaderIdempotent), hb.Get(api.HeaderIdempotent))
	}
	// X-Request-Id is a key too; another body under the same key is
	// another request.
	g.mustChat(params(0.9, "hi"), option.WithHeader("X-Request-Id", "order-1"))
	if up.calls() != 1 {
		t.Fatalf("X-Request-Id with the same value: calls %d", up.calls())
	}
	if c, _ := g.mustChat(params(0.9, "something else"), key); up.calls() != 2 || c == a {
		t.Fatalf("another body: calls %d, %q", up.calls(), c)
	}
	// After the window: a new call.
	clk.Advance(1100 * time.Millisecond)
	c, hc := g.mustChat(params(0.9, "hi"), key)
	if up.calls() != 3 || c == a || hc.Get(api.HeaderIdempotent) != "" {
		t.Fatalf("after the window: calls %d, %q, header %q", up.calls(), c, hc.Get(api.HeaderIdempotent))
	}
	if _, body := g.manage("GET", "/api/cache/stats"); !strings.Contains(string(body), `"activeKeys":2`) {
		t.Fatalf("stats: %s", body) // order-1/hi (again) and order-1/something else
	}
}

func TestGatewayIdempotencyFailedLeaderIsNotReplayed(t *testing.T) {
	up := newUpstream(t, 0)
	g := newGateway(t, up, gwOptions{})
	up.fail.Store(http.StatusBadRequest) // a 500 would put the connection on cooldown
	key := option.WithHeader("Idempotency-Key", "retry-me")
	if _, _, err := g.chat(params(0.9, "hi"), key); err == nil {
		t.Fatal("the failing upstream answered")
	}
	up.fail.Store(0)
	text, h := g.mustChat(params(0.9, "hi"), key)
	if h.Get(api.HeaderIdempotent) != "" || text != "answer number 2" {
		t.Fatalf("retry after a failure: %q %q", h.Get(api.HeaderIdempotent), text)
	}
}

// concurrent sends n identical requests with one Idempotency-Key, spread
// over the gateways, and returns the answers.
func concurrent(t *testing.T, n int, gws ...*gateway) []string {
	t.Helper()
	answers := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i], _, errs[i] = gws[i%len(gws)].chat(params(0.9, "coalesce"), option.WithHeader("Idempotency-Key", "same"))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(answers)
	return answers
}

func TestGatewayIdempotencyCoalesces(t *testing.T) {
	up := newUpstream(t, 200*time.Millisecond)
	g := newGateway(t, up, gwOptions{})
	answers := concurrent(t, 20, g)
	if up.calls() != 1 || answers[0] != "answer number 1" || answers[0] != answers[19] {
		t.Fatalf("calls %d, answers %q", up.calls(), answers)
	}
}

func TestGatewayIdempotencyCoalescesAcrossReplicas(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	up := newUpstream(t, 300*time.Millisecond)
	a := newGateway(t, up, gwOptions{redis: rc, prefix: prefix})
	b := newGateway(t, up, gwOptions{redis: rc, prefix: prefix})
	answers := concurrent(t, 20, a, b)
	if up.calls() != 1 || answers[0] != "answer number 1" || answers[0] != answers[19] {
		t.Fatalf("calls %d, answers %q", up.calls(), answers)
	}
	// The shared cache tier on Redis: a hit put by one replica serves the other.
	first, _ := a.mustChat(params(0, "shared"))
	second, h := b.mustChat(params(0, "shared"))
	if h.Get(api.HeaderCache) != "HIT" || first != second || up.calls() != 2 {
		t.Fatalf("redis tier: %q, %q %q, calls %d", h.Get(api.HeaderCache), first, second, up.calls())
	}
}
