package limits_test

import (
	"context"
	"encoding/json"
	"errors"
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

	asdk "github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// newMoneyEnv is a running gateway (usage writer and spend flusher
// started) over SQLite with an OpenAI provider "a" served by up, whose
// models are "m" (unknown to the gateway's catalog) and "gpt-4o", and an
// OpenAI Responses provider "r" on the same upstream.
func newMoneyEnv(t *testing.T, up http.HandlerFunc) *env {
	return newMoneyEnvWith(t, up, nil)
}

// newMoneyEnvWith is newMoneyEnv whose configuration more may change
// (given the upstream's URL) before the gateway starts. The env's stop
// ends the gateway's Run (as a shutdown does) and returned once Run has.
func newMoneyEnvWith(t *testing.T, up http.HandlerFunc, more func(cfg *config.Config, upstream string)) *env {
	t.Helper()
	e := &env{t: t}
	upstream := httptest.NewServer(up)
	t.Cleanup(upstream.Close)
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	cfg.Route.RequireAPIKey = true
	cfg.Route.APIKeys = []config.Secret{"config-key-1"}
	cfg.Route.Providers = []config.RouteProvider{{ID: "a", Type: "openai", BaseURL: upstream.URL,
		APIKeys: []config.Secret{"sk-up"}, Models: []string{"m", "gpt-4o"}},
		{ID: "r", Type: "openai-responses", BaseURL: upstream.URL, APIKeys: []config.Secret{"sk-up"}, Models: []string{"m"}}}
	if more != nil {
		more(&cfg, upstream.URL)
	}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: []byte("0123456789abcdef0123456789abcdef"),
		Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	e.srv = httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	e.db, e.stop, e.stopped, e.app = db, cancel, done, a
	t.Cleanup(func() {
		e.srv.Close()
		cancel()
		<-done
		db.Close()
	})
	jar, _ := cookiejar.New(nil)
	e.c = &http.Client{Jar: jar}
	e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
	return e
}

// usageRecords polls the usage logs of a key until n records are there.
func (e *env) usageRecords(keyID string, n int) []map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := e.want(http.StatusOK, "GET", "/api/usage/logs?apiKeyId="+keyID, nil).Object(e.t)["logs"].([]any)
		if len(logs) >= n {
			out := make([]map[string]any, len(logs))
			for i, l := range logs {
				out[i] = l.(map[string]any)
			}
			return out
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("usage logs of %s: %d records, want %d", keyID, len(logs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spent is a key's spend in its daily window (settled plus reserved).
func (e *env) spent(keyID string) float64 {
	e.t.Helper()
	for _, b := range e.want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(e.t)["budgets"].([]any) {
		if b := b.(map[string]any); b["apiKeyId"] == keyID {
			return b["spentUsd"].(float64)
		}
	}
	e.t.Fatalf("no budget for %s", keyID)
	return 0
}

// chunk writes one OpenAI stream chunk carrying text.
func chunk(w http.ResponseWriter, text string) {
	b, _ := json.Marshal(map[string]any{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
		"choices": []map[string]any{{"index": 0, "delta": map[string]any{"content": text}, "finish_reason": nil}}})
	fmt.Fprintf(w, "data: %s\n\n", b)
	w.(http.Flusher).Flush()
}

// answer writes a whole OpenAI chat answer with 10 prompt and 10
// completion tokens.
func answer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":10,"total_tokens":20}}`)
}

func body(r *http.Request) map[string]any {
	var m map[string]any
	_ = json.NewDecoder(r.Body).Decode(&m)
	return m
}

func sdk(e *env, key string) *openai.Client {
	c := openai.NewClient(ooption.WithBaseURL(e.srv.URL+"/v1/"), ooption.WithAPIKey(key), ooption.WithMaxRetries(0))
	return &c
}

func hello(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}
}

// A client that reads a few chunks of a long stream and leaves is charged
// for what was delivered or the reservation, whichever is larger — in its
// budget, its usage record and its token limits — not let off for free.
func TestStreamLeftByTheClientIsCharged(t *testing.T) {
	e := newMoneyEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if body(r)["stream"] != true {
			answer(w)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for range 5 {
			chunk(w, strings.Repeat("x", 400)) // 100 tokens each
		}
		<-r.Context().Done() // a long generation, until the gateway hangs up
	})
	// $1000 per million input tokens, $2000 per million output tokens:
	// reserving 1000 output tokens is $2.
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/m", "input": 1000, "output": 2000})
	id, raw := e.createKey(map[string]any{"name": "leaver", "tpm": 300, "tpd": 300})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 100})

	p := hello("a/m")
	p.MaxTokens = openai.Int(1000)
	st := sdk(e, raw).Chat.Completions.NewStreaming(context.Background(), p)
	for i := 0; i < 3; i++ {
		if !st.Next() {
			t.Fatalf("chunk %d: %v", i, st.Err())
		}
	}
	st.Close() // the client leaves mid-stream

	rec := e.usageRecords(id, 1)[0]
	if rec["status"].(float64) != 499 || rec["outputTokens"].(float64) < 200 || rec["estimated"] != true {
		t.Fatalf("usage record of the abandoned stream: %v", rec)
	}
	cost := rec["costUsd"].(float64)
	if cost < 2 {
		t.Fatalf("usage record charges $%v, want at least the $2 reserved", cost)
	}
	if s := e.spent(id); s < 2 || s-cost > 1e-6 || cost-s > 1e-6 {
		t.Fatalf("budget spent $%v after the abandoned stream (record $%v), want the same charge of at least $2", s, cost)
	}
	// The delivered tokens count against the key's token limits.
	r := e.do("POST", "/v1/chat/completions", chat("a/m"), bearer(raw)...)
	if r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "limit of 300 reached") {
		t.Fatalf("after 500 delivered tokens with tpm 300: %d %s", r.Status, r.Body)
	}
}

// An upstream that fails mid-stream leaves the client with what it sent:
// that is charged (here more than the reservation, which is then the
// floor only).
func TestStreamCutByTheUpstreamIsCharged(t *testing.T) {
	e := newMoneyEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if body(r)["stream"] != true {
			answer(w)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for range 5 {
			chunk(w, strings.Repeat("x", 400))
		}
		conn, _, err := w.(http.Hijacker).Hijack() // the upstream dies
		if err == nil {
			conn.Close()
		}
	})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/m", "input": 1000, "output": 2000})
	id, raw := e.createKey(map[string]any{"name": "unlucky", "tpd": 300})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 100})

	p := hello("a/m")
	p.MaxTokens = openai.Int(100) // $0.20 reserved; 500 tokens delivered cost $1
	st := sdk(e, raw).Chat.Completions.NewStreaming(context.Background(), p)
	n := 0
	for st.Next() {
		n++
	}
	if st.Err() == nil || n < 5 {
		t.Fatalf("stream of %d chunks ended with %v, want the chunks then an error", n, st.Err())
	}
	st.Close()

	rec := e.usageRecords(id, 1)[0]
	if rec["status"].(float64) < 500 || rec["outputTokens"].(float64) < 500 {
		t.Fatalf("usage record of the broken stream: %v", rec)
	}
	cost := rec["costUsd"].(float64)
	if cost < 1 {
		t.Fatalf("usage record charges $%v, want the $1 of the 500 tokens delivered", cost)
	}
	if s := e.spent(id); s < 1 || s-cost > 1e-6 || cost-s > 1e-6 {
		t.Fatalf("budget spent $%v (record $%v), want the delivered $1 and more", s, cost)
	}
	r := e.do("POST", "/v1/chat/completions", chat("a/m"), bearer(raw)...)
	if r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "tpd limit of 300 reached") {
		t.Fatalf("after 500 delivered tokens with tpd 300: %d %s", r.Status, r.Body)
	}
}

// held answers streams and plain calls once released; got receives each
// call's body as it arrives.
type held struct {
	got     chan map[string]any
	release chan struct{}
}

func newHeld() *held { return &held{got: make(chan map[string]any, 16), release: make(chan struct{})} }

func (h *held) serve(w http.ResponseWriter, r *http.Request) {
	b := body(r)
	h.got <- b
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	switch {
	case strings.Contains(r.URL.Path, ":generateContent"):
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":10,"totalTokenCount":20}}`)
	case strings.HasSuffix(r.URL.Path, "/messages"):
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":10}}`)
	default:
		answer(w)
	}
}

// inFlight starts a call, waits until the upstream has it, and returns the
// key's spend then (which includes the call's reservation) and a function
// finishing the call.
func inFlight(t *testing.T, e *env, h *held, keyID string, call func() error) (float64, map[string]any) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	var b map[string]any
	select {
	case b = <-h.got:
	case err := <-errc:
		t.Fatalf("the call ended before reaching the upstream: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	s := e.spent(keyID)
	h.release <- struct{}{}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return s, b
}

// Without max_tokens, the budget reserves the model's whole output (its
// known limit, or a generous default), not 1024 tokens; n answers
// reserve n times the output.
func TestReservationCoversTheModelsOutputLimitAndN(t *testing.T) {
	h := newHeld()
	e := newMoneyEnv(t, h.serve)
	// $1000 per million output tokens: 1000 output tokens reserve $1.
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/*", "input": 0, "output": 1000})
	id, raw := e.createKey(map[string]any{"name": "spender"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 1000})
	c := sdk(e, raw)
	ctx := context.Background()
	call := func(p openai.ChatCompletionNewParams) func() error {
		return func() error {
			_, err := c.Chat.Completions.New(ctx, p)
			return err
		}
	}

	// gpt-4o writes at most 16384 tokens: $16.384 reserved.
	before := e.spent(id)
	s, _ := inFlight(t, e, h, id, call(hello("a/gpt-4o")))
	if got := s - before; got < 16.384 || got > 16.5 {
		t.Fatalf("gpt-4o without max_tokens reserved $%v, want $16.384 (16384 output tokens)", got)
	}
	// A model the gateway does not know: the documented default of 32768.
	before = e.spent(id)
	s, _ = inFlight(t, e, h, id, call(hello("a/m")))
	if got := s - before; got < 32.768 || got > 33 {
		t.Fatalf("an unknown model without max_tokens reserved $%v, want $32.768 (32768 output tokens)", got)
	}
	// max_tokens above the model's known limit reserves what it permits:
	// the upstream, not the price table, decides what it writes.
	p := hello("a/gpt-4o")
	p.MaxTokens = openai.Int(100_000)
	before = e.spent(id)
	s, _ = inFlight(t, e, h, id, call(p))
	if got := s - before; got < 100 || got > 100.1 {
		t.Fatalf("gpt-4o with max_tokens 100000 reserved $%v, want the $100 of 100000 output tokens", got)
	}
	// n = 3 answers of at most 100 tokens each: $0.30.
	p = hello("a/m")
	p.MaxTokens, p.N = openai.Int(100), openai.Int(3)
	before = e.spent(id)
	s, b := inFlight(t, e, h, id, call(p))
	if got := s - before; got < 0.3 || got > 0.31 {
		t.Fatalf("n=3 with max_tokens 100 reserved $%v, want $0.30", got)
	}
	if b["n"].(float64) != 3 {
		t.Fatalf("upstream got %v", b)
	}
}

// Parameters that raise the price by amounts the gateway's price table
// does not know are refused with a 400 for keys with a budget, in every
// dialect; keys without one may use them.
func TestUnpricedParametersAreRefusedForBudgetedKeys(t *testing.T) {
	var got sync.Map // what reached the upstream, by parameter
	e := newMoneyEnv(t, func(w http.ResponseWriter, r *http.Request) {
		b := body(r)
		if v, ok := b["service_tier"]; ok {
			got.Store("service_tier", v)
		}
		answer(w)
	})
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/*", "input": 1, "output": 2})
	id, raw := e.createKey(map[string]any{"name": "budgeted"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 10})
	_, free := e.createKey(map[string]any{"name": "free"})
	ctx := context.Background()

	var oe *openai.Error
	refused := func(what string, err error) {
		t.Helper()
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusBadRequest || !strings.Contains(oe.Message, "budget") {
			t.Fatalf("%s for a budgeted key: %v, want a 400 naming the budget", what, err)
		}
	}
	// OpenAI chat: a priority service tier, web search.
	p := hello("a/m")
	p.ServiceTier = openai.ChatCompletionNewParamsServiceTierPriority
	_, err := sdk(e, raw).Chat.Completions.New(ctx, p)
	refused("service_tier priority", err)
	if _, ok := got.Load("service_tier"); ok {
		t.Fatal("the refused request reached the upstream")
	}
	_, err = sdk(e, raw).Chat.Completions.New(ctx, hello("a/m"), ooption.WithJSONSet("web_search_options", map[string]any{}))
	refused("web_search_options", err)
	// Responses: a built-in tool run (and billed) by the provider.
	_, err = sdk(e, raw).Responses.New(ctx, responses.ResponseNewParams{Model: "r/m",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("news?")},
		Tools: []responses.ToolUnionParam{{OfWebSearch: &responses.WebSearchToolParam{Type: responses.WebSearchToolTypeWebSearch}}}})
	refused("Responses web_search tool", err)
	// Anthropic: a beta feature billed at a premium.
	ac := asdk.NewClient(aoption.WithBaseURL(e.srv.URL+"/"), aoption.WithAPIKey(raw), aoption.WithMaxRetries(0),
		aoption.WithHeader("anthropic-beta", "context-1m-2025-08-07"))
	_, err = ac.Messages.New(ctx, asdk.MessageNewParams{Model: "a/m", MaxTokens: 100,
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hello"))}})
	var ae *asdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.RawJSON(), "invalid_request_error") ||
		!strings.Contains(ae.RawJSON(), "context-1m") {
		t.Fatalf("anthropic-beta context-1m for a budgeted key: %v", err)
	}
	// Gemini: Google Search grounding.
	gc, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: raw, Backend: genai.BackendGeminiAPI, HTTPOptions: genai.HTTPOptions{BaseURL: e.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = gc.Models.GenerateContent(ctx, "a/m", genai.Text("news?"), &genai.GenerateContentConfig{Tools: []*genai.Tool{{GoogleSearch: &genai.GoogleSearch{}}}})
	var ge genai.APIError
	if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest || ge.Status != "INVALID_ARGUMENT" {
		t.Fatalf("Gemini googleSearch for a budgeted key: %v", err)
	}

	// Tiers priced at most at the standard price pass.
	for _, tier := range []openai.ChatCompletionNewParamsServiceTier{"auto", "default", "flex"} {
		p = hello("a/m")
		p.ServiceTier = tier
		if _, err := sdk(e, raw).Chat.Completions.New(ctx, p); err != nil {
			t.Fatalf("service_tier %s: %v", tier, err)
		}
	}
	// A key without a budget is not refused.
	p = hello("a/m")
	p.ServiceTier = openai.ChatCompletionNewParamsServiceTierPriority
	if _, err := sdk(e, free).Chat.Completions.New(ctx, p); err != nil {
		t.Fatalf("service_tier priority without a budget: %v", err)
	}
	if v, _ := got.Load("service_tier"); v != "priority" {
		t.Fatalf("upstream saw service_tier %v", v)
	}
}

// A client that leaves while the upstream works on a plain (not
// streamed) answer is charged its reservation too: the upstream may bill
// the work all the same.
func TestPlainCallLeftByTheClientIsCharged(t *testing.T) {
	h := newHeld()
	e := newMoneyEnv(t, h.serve)
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/m", "input": 0, "output": 1000})
	id, raw := e.createKey(map[string]any{"name": "impatient"})
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 100})
	ctx, cancel := context.WithCancel(context.Background())
	p := hello("a/m")
	p.MaxTokens = openai.Int(1000) // $1 reserved
	errc := make(chan error, 1)
	go func() { _, err := sdk(e, raw).Chat.Completions.New(ctx, p); errc <- err }()
	select {
	case <-h.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's call ended with %v", err)
	}
	rec := e.usageRecords(id, 1)[0]
	if rec["status"].(float64) != 499 || rec["costUsd"].(float64) < 1 {
		t.Fatalf("usage record of the abandoned call: %v", rec)
	}
	if s := e.spent(id); s < 1 {
		t.Fatalf("budget spent $%v after the abandoned call, want the $1 reserved", s)
	}
}
