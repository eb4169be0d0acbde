package limits_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// refusedWhileInFlight starts call, waits until the upstream has it, and
// then expects next to be refused for the budget before it reaches the
// upstream: the first call's reservation already took the whole budget.
func refusedWhileInFlight(t *testing.T, h *held, call func() error, next func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	select {
	case <-h.got:
	case err := <-errc:
		t.Fatalf("the first call ended before reaching the upstream: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first call never reached the upstream")
	}
	nextc := make(chan error, 1)
	go func() { nextc <- next() }()
	select {
	case err := <-nextc:
		if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "udget") {
			t.Errorf("the second call while the first runs: %v, want a 429 naming the budget", err)
		}
	case <-h.got:
		t.Error("the second call was admitted: the first one's reservation did not cover what it permits")
		h.release <- struct{}{}
		h.release <- struct{}{}
		<-nextc
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		return
	}
	h.release <- struct{}{}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// What a request permits the upstream to bill is reserved: a cap above
// the model's known output limit is not clamped down to it, and thinking
// billed beyond the cap (Gemini's thinkingBudget) is added. With a budget
// just below that, a second call is refused while the first one runs, in
// the OpenAI and the Gemini dialect.
func TestReservationCoversWhatTheRequestPermits(t *testing.T) {
	h := newHeld()
	e := newMoneyEnvWith(t, h.serve, func(cfg *config.Config, up string) {
		cfg.Route.Providers = append(cfg.Route.Providers, config.RouteProvider{ID: "g", Type: "gemini", BaseURL: up + "/v1beta",
			APIKeys: []config.Secret{"sk-up"}, Models: []string{"gemini-2.5-flash"}})
	})
	// $1000 per million output tokens: 1000 output tokens reserve $1.
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/*", "input": 0, "output": 1000})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "g/*", "input": 0, "output": 1000})
	ctx := context.Background()

	// OpenAI: max_tokens 20000 on gpt-4o (known limit 16384) is $20.
	id, raw := e.createKey(map[string]any{"name": "openai"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 19.9})
	c := sdk(e, raw)
	p := hello("a/gpt-4o")
	p.MaxTokens = openai.Int(20_000)
	refusedWhileInFlight(t, h, func() error { _, err := c.Chat.Completions.New(ctx, p); return err },
		func() error {
			_, err := c.Chat.Completions.New(ctx, hello("a/gpt-4o"))
			var oe *openai.Error
			if errors.As(err, &oe) {
				return fmt.Errorf("%d %s", oe.StatusCode, oe.Message)
			}
			return err
		})

	// Gemini: maxOutputTokens 70000 on gemini-2.5-flash (known limit
	// 65536) and a thinking budget of 10000 billed beyond it: $80.
	gid, graw := e.createKey(map[string]any{"name": "gemini"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": gid, "dailyLimitUsd": 79.9})
	gc, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: graw, Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: e.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &genai.GenerateContentConfig{MaxOutputTokens: 70_000, ThinkingConfig: &genai.ThinkingConfig{ThinkingBudget: genai.Ptr[int32](10_000)}}
	refusedWhileInFlight(t, h,
		func() error {
			_, err := gc.Models.GenerateContent(ctx, "g/gemini-2.5-flash", genai.Text("hello"), cfg)
			return err
		},
		func() error {
			_, err := gc.Models.GenerateContent(ctx, "g/gemini-2.5-flash", genai.Text("hello"), nil)
			var ge genai.APIError
			if errors.As(err, &ge) {
				return fmt.Errorf("%d %s", ge.Code, ge.Message)
			}
			return err
		})
}

// A request without max_tokens to an upstream whose adapter sends its
// own default cap (Anthropic's 4096) reserves that default, not the
// model's whole output limit.
func TestReservationUsesTheAdaptersDefaultCap(t *testing.T) {
	h := newHeld()
	e := newMoneyEnvWith(t, h.serve, func(cfg *config.Config, up string) {
		cfg.Route.Providers = append(cfg.Route.Providers, config.RouteProvider{ID: "c", Type: "anthropic", BaseURL: up,
			APIKeys: []config.Secret{"sk-up"}, Models: []string{"claude-sonnet-4-5"}})
	})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "c/*", "input": 0, "output": 1000})
	id, raw := e.createKey(map[string]any{"name": "claude"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 1000})
	c := sdk(e, raw)
	before := e.spent(id)
	s, b := inFlight(t, e, h, id, func() error {
		_, err := c.Chat.Completions.New(context.Background(), hello("c/claude-sonnet-4-5"))
		return err
	})
	if got := s - before; got < 4.096 || got > 4.2 {
		t.Fatalf("claude-sonnet-4-5 (limit 64000) without max_tokens reserved $%v, want the $4.096 of the 4096 tokens the adapter sends", got)
	}
	if b["max_tokens"].(float64) != 4096 {
		t.Fatalf("upstream got max_tokens %v", b["max_tokens"])
	}
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.RefusedAddr(t)
}

// An attempt whose request reached the upstream and then ran out of
// time is charged its reservation (the upstream may bill the work); an
// attempt whose upstream could not be reached costs nothing.
func TestAttemptsThatReachedTheUpstreamAreCharged(t *testing.T) {
	got := make(chan struct{}, 4)
	e := newMoneyEnvWith(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- struct{}{}
		<-r.Context().Done() // accepts the request and never answers
	}, func(cfg *config.Config, up string) {
		cfg.Route.Providers = append(cfg.Route.Providers,
			config.RouteProvider{ID: "slow", Type: "openai", BaseURL: up, APIKeys: []config.Secret{"sk-up"}, Models: []string{"m"},
				Timeout: 300 * time.Millisecond},
			config.RouteProvider{ID: "down", Type: "openai", BaseURL: closedURL(t), APIKeys: []config.Secret{"sk-up"}, Models: []string{"m"}})
	})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "slow/*", "input": 0, "output": 1000})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "down/*", "input": 0, "output": 1000})

	slowID, slow := e.createKey(map[string]any{"name": "slow"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": slowID, "dailyLimitUsd": 100})
	body := map[string]any{"model": "slow/m", "max_tokens": 1000, "messages": []map[string]string{{"role": "user", "content": "hello"}}}
	if r := e.do("POST", "/v1/chat/completions", body, bearer(slow)...); r.Status != http.StatusGatewayTimeout {
		t.Fatalf("the timed-out call: %d %s", r.Status, r.Body)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	rec := e.usageRecords(slowID, 1)[0]
	if rec["status"].(float64) != http.StatusGatewayTimeout || rec["costUsd"].(float64) < 1 || rec["provider"] != "slow" {
		t.Fatalf("usage record of the timed-out call: %v", rec)
	}
	if s := e.spent(slowID); s < 1 {
		t.Fatalf("budget spent $%v after the timed-out call, want the $1 reserved", s)
	}

	downID, down := e.createKey(map[string]any{"name": "down"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": downID, "dailyLimitUsd": 100})
	body["model"] = "down/m"
	if r := e.do("POST", "/v1/chat/completions", body, bearer(down)...); r.Status < 500 {
		t.Fatalf("the call to an unreachable upstream: %d %s", r.Status, r.Body)
	}
	rec = e.usageRecords(downID, 1)[0]
	if rec["costUsd"].(float64) != 0 {
		t.Fatalf("usage record of the call that reached no upstream: %v", rec)
	}
	if s := e.spent(downID); s != 0 {
		t.Fatalf("budget spent $%v after a call that reached no upstream, want nothing", s)
	}
}

// A request still in flight when the gateway's Run is told to stop (the
// HTTP server gave up draining) settles before the last flush: its spend
// is persisted.
func TestSpendOfRequestsInFlightAtShutdownIsPersisted(t *testing.T) {
	h := newHeld()
	e := newMoneyEnv(t, h.serve)
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/m", "input": 1000, "output": 1000})
	id, raw := e.createKey(map[string]any{"name": "late"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 100})
	errc := make(chan error, 1)
	go func() { _, err := sdk(e, raw).Chat.Completions.New(context.Background(), hello("a/m")); errc <- err }()
	select {
	case <-h.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	e.stop()
	select {
	case <-e.stopped:
		t.Error("Run returned while a request was still in flight: what it settles is lost")
	case <-time.After(300 * time.Millisecond):
	}
	h.release <- struct{}{}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once the request had settled")
	}
	var micros int64
	if err := e.db.QueryRow(context.Background(), `SELECT COALESCE(SUM(spent_micros), 0) FROM route_key_spend WHERE key_id = ? AND period = 'daily'`,
		id).Scan(&micros); err != nil {
		t.Fatal(err)
	}
	if micros != 20_000 { // 10 prompt and 10 completion tokens at $1000 per million
		t.Fatalf("persisted daily spend %d µUSD, want the 20000 the request settled", micros)
	}
}
