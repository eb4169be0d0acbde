package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/route/api"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// recordingGate admits everything (or refuses with refuse) and keeps the
// calls and outcomes it sees.
type recordingGate struct {
	mu       sync.Mutex
	calls    []pipeline.Call
	outcomes []pipeline.Outcome
	refuse   *llm.Error
	filter   router.Filter
}

func (g *recordingGate) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	g.mu.Lock()
	g.calls = append(g.calls, *c)
	g.mu.Unlock()
	if g.refuse != nil {
		return nil, nil, g.refuse
	}
	if g.filter != nil {
		ctx = router.WithFilter(ctx, g.filter)
	}
	return ctx, func(o pipeline.Outcome) {
		g.mu.Lock()
		g.outcomes = append(g.outcomes, o)
		g.mu.Unlock()
	}, nil
}

func (g *recordingGate) outcomesWait(t *testing.T, n int) []pipeline.Outcome {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		out := append([]pipeline.Outcome(nil), g.outcomes...)
		g.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outcomes, want %d", len(out), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type mapCache struct {
	mu sync.Mutex
	m  map[string]*llm.Response
}

func (c *mapCache) Get(_ context.Context, k string) (*llm.Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.m[k]
	return r, ok
}

func (c *mapCache) Put(_ context.Context, k string, r *llm.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = r
}

func (c *mapCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// onceIdem stores the first committed answer per key (no waiting).
type onceIdem struct {
	mu sync.Mutex
	m  map[string]*llm.Response
}

func (o *onceIdem) Begin(_ context.Context, k string) (*llm.Response, func(*llm.Response), error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r := o.m[k]; r != nil {
		return r, nil, nil
	}
	return nil, func(r *llm.Response) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if r != nil {
			o.m[k] = r
		}
	}, nil
}

func pipelineGateway(t *testing.T, up *upstream, p pipeline.Stages) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{gatewayKey}, RequireAPIKey: true,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(a.Router, a, api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey}, Pipeline: p}, clock.Real{}, logging.Discard())
	srv := httptest.NewServer(httpx.Wrap(s, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string, headers ...string) *http.Response {
	t.Helper()
	return postTo(t, url+"/v1/chat/completions", body, headers...)
}

func postTo(t *testing.T, url, body string, headers ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func drain(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPipelineCacheHitReplayedAsStream(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gate, cache := &recordingGate{}, &mapCache{m: map[string]*llm.Response{}}
	gw := pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{gate}, Cache: cache})
	body := `{"model":"oa/gpt-4o","temperature":0,"messages":[{"role":"user","content":"hi"}]}`

	first := post(t, gw.URL, body)
	firstBody := drain(t, first)
	if first.StatusCode != 200 || first.Header.Get(api.HeaderCache) != "MISS" {
		t.Fatalf("first: %d %q", first.StatusCode, first.Header.Get(api.HeaderCache))
	}
	second := post(t, gw.URL, body)
	secondBody := drain(t, second)
	if second.Header.Get(api.HeaderCache) != "HIT" || up.calls() != 1 {
		t.Fatalf("second: cache %q, upstream calls %d", second.Header.Get(api.HeaderCache), up.calls())
	}
	if !strings.Contains(secondBody, `"content"`) || !strings.Contains(firstBody, `"content"`) {
		t.Fatalf("bodies: %s / %s", firstBody, secondBody)
	}

	// The same request streamed is a hit too, replayed as a proper stream.
	c := openai.NewClient(option.WithBaseURL(gw.URL+"/v1"), option.WithAPIKey(gatewayKey), option.WithMaxRetries(0))
	var raw *http.Response
	st := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "oa/gpt-4o", Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}, option.WithResponseInto(&raw))
	acc := openai.ChatCompletionAccumulator{}
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if raw == nil || raw.Header.Get(api.HeaderCache) != "HIT" {
		t.Fatalf("streamed request not a hit: %v", raw)
	}
	if up.calls() != 1 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content == "" || !strings.Contains(firstBody, acc.Choices[0].Message.Content) {
		t.Fatalf("streamed hit: calls %d, choices %+v", up.calls(), acc.Choices)
	}

	// Opting out bypasses the cache; a non-zero temperature is not cached.
	r := post(t, gw.URL, body, api.HeaderNoCache, "true")
	drain(t, r)
	if r.Header.Get(api.HeaderCache) != "" || up.calls() != 2 {
		t.Fatalf("no-cache: header %q, calls %d", r.Header.Get(api.HeaderCache), up.calls())
	}
	r = post(t, gw.URL, strings.Replace(body, `"temperature":0`, `"temperature":0.7`, 1))
	drain(t, r)
	if r.Header.Get(api.HeaderCache) != "" || up.calls() != 3 {
		t.Fatalf("warm request: header %q, calls %d", r.Header.Get(api.HeaderCache), up.calls())
	}

	outs := gate.outcomesWait(t, 5)
	if outs[0].Cache != "MISS" || outs[0].Usage.OutputTokens == 0 || outs[0].Target.Provider != "oa" || outs[0].Connection != "oa#1" {
		t.Fatalf("miss outcome %+v", outs[0])
	}
	if outs[1].Cache != "HIT" || outs[1].Usage != (llm.Usage{}) || outs[2].Cache != "HIT" {
		t.Fatalf("hit outcomes %+v %+v", outs[1], outs[2])
	}
}

func TestPipelineStreamIsKeptAndAccounted(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gate, cache := &recordingGate{}, &mapCache{m: map[string]*llm.Response{}}
	gw := pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{gate}, Cache: cache})
	body := `{"model":"oa/gpt-4o","temperature":0,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	r := post(t, gw.URL, body)
	sse := drain(t, r)
	if r.Header.Get(api.HeaderCache) != "MISS" || !strings.Contains(sse, "data: [DONE]") {
		t.Fatalf("stream: %q %s", r.Header.Get(api.HeaderCache), sse)
	}
	out := gate.outcomesWait(t, 1)[0]
	if out.Status != 200 || out.Usage.OutputTokens == 0 || out.TTFT > out.Latency || out.Err != nil {
		t.Fatalf("stream outcome %+v", out)
	}
	if cache.len() != 1 {
		t.Fatalf("a completed stream was not cached")
	}
	r = post(t, gw.URL, strings.Replace(body, `"stream":true`, `"stream":false`, 1))
	drain(t, r)
	if r.Header.Get(api.HeaderCache) != "HIT" || up.calls() != 1 {
		t.Fatalf("plain after stream: %q, calls %d", r.Header.Get(api.HeaderCache), up.calls())
	}
}

func TestPipelineGateRefusalAndFilter(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	first := &recordingGate{}
	refusing := &recordingGate{refuse: &llm.Error{Status: 429, Type: llm.ErrRateLimit, Message: "rpm limit reached", RetryAfter: 3 * time.Second}}
	gw := pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{first, refusing}})
	r := post(t, gw.URL, `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	b := drain(t, r)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "3" || !strings.Contains(b, "rpm limit reached") || up.calls() != 0 {
		t.Fatalf("refused: %d %q %s, calls %d", r.StatusCode, r.Header.Get("Retry-After"), b, up.calls())
	}
	if o := first.outcomesWait(t, 1)[0]; o.Status != 429 {
		t.Fatalf("the earlier gate saw %+v", o)
	}
	if c := refusing.calls[0]; c.KeyID != "config:1" || c.Model != "oa/gpt-4o" || c.InputTokens == 0 || c.Endpoint != "/v1/chat/completions" {
		t.Fatalf("call %+v", c)
	}

	blocked := &recordingGate{filter: func(t router.Target) bool { return t.Provider != "oa" }}
	gw = pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{blocked}})
	r = post(t, gw.URL, `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	b = drain(t, r)
	if r.StatusCode != 403 || !strings.Contains(b, "not allowed") || up.calls() != 0 {
		t.Fatalf("filtered: %d %s", r.StatusCode, b)
	}
}

func TestPipelineIdempotentReplay(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gate := &recordingGate{}
	gw := pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{gate}, Idempotency: &onceIdem{m: map[string]*llm.Response{}}})
	body := `{"model":"oa/gpt-4o","temperature":0.9,"messages":[{"role":"user","content":"hi"}]}`
	a := post(t, gw.URL, body, "Idempotency-Key", "k1")
	ab := drain(t, a)
	b := post(t, gw.URL, body, "Idempotency-Key", "k1")
	bb := drain(t, b)
	if up.calls() != 1 || b.Header.Get(api.HeaderIdempotent) != "true" || a.Header.Get(api.HeaderIdempotent) != "" || ab != bb {
		t.Fatalf("replay: calls %d, header %q/%q\n%s\n%s", up.calls(), a.Header.Get(api.HeaderIdempotent), b.Header.Get(api.HeaderIdempotent), ab, bb)
	}
	c := post(t, gw.URL, body, "X-Request-Id", "k2")
	drain(t, c)
	if up.calls() != 2 || c.Header.Get(api.HeaderIdempotent) != "" {
		t.Fatalf("another key: calls %d", up.calls())
	}
	if n := len(gate.outcomesWait(t, 2)); n != 2 {
		t.Fatalf("a replay passed the gates: %d outcomes", n)
	}
}

// Embeddings pass the same gates as chat: accounted with their usage,
// refused before any upstream call, filtered by provider.
func TestPipelineGatesEmbeddings(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1,2]}],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}`))
	})
	gate := &recordingGate{}
	gw := pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{gate}})
	r := postTo(t, gw.URL+"/v1/embeddings", `{"model":"oa/text-embedding-3-small","input":"some words to embed"}`)
	if b := drain(t, r); r.StatusCode != 200 {
		t.Fatalf("embeddings: %d %s", r.StatusCode, b)
	}
	o := gate.outcomesWait(t, 1)[0]
	if o.Status != 200 || o.Usage.InputTokens != 7 || o.Usage.Estimated || o.Target.Provider != "oa" || o.Connection == "" || o.Latency <= 0 {
		t.Fatalf("embedding outcome %+v", o)
	}
	if c := gate.calls[0]; c.KeyID != "config:1" || c.Model != "oa/text-embedding-3-small" || c.InputTokens == 0 || c.Endpoint != "/v1/embeddings" {
		t.Fatalf("embedding call %+v", c)
	}

	refusing := &recordingGate{refuse: &llm.Error{Status: 429, Type: llm.ErrRateLimit, Message: "rpm limit reached", RetryAfter: 2 * time.Second}}
	gw = pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{refusing}})
	calls := up.calls()
	r = postTo(t, gw.URL+"/v1/embeddings", `{"model":"oa/text-embedding-3-small","input":"x"}`)
	if b := drain(t, r); r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" || !strings.Contains(b, "rpm limit reached") || up.calls() != calls {
		t.Fatalf("refused embeddings: %d %s, calls %d → %d", r.StatusCode, b, calls, up.calls())
	}

	blocked := &recordingGate{filter: func(t router.Target) bool { return t.Provider != "oa" }}
	gw = pipelineGateway(t, up, pipeline.Stages{Gates: []pipeline.Gate{blocked}})
	r = postTo(t, gw.URL+"/api/embed", `{"model":"oa/text-embedding-3-small","input":"x"}`)
	if b := drain(t, r); r.StatusCode != 403 || up.calls() != calls {
		t.Fatalf("filtered Ollama embed: %d %s", r.StatusCode, b)
	}
	if o := blocked.outcomesWait(t, 1)[0]; o.Status != 403 {
		t.Fatalf("filtered outcome %+v", o)
	}
}

// leavingWriter is a client's connection that goes away while the
// answer is written: the first write containing leaveAt fails and
// cancels the request (as a server notices a closed connection).
type leavingWriter struct {
	h       http.Header
	leaveAt string
	leave   context.CancelFunc
	left    bool
	body    strings.Builder
}

func (w *leavingWriter) Header() http.Header { return w.h }
func (w *leavingWriter) WriteHeader(int)     {}
func (w *leavingWriter) Flush()              {}

func (w *leavingWriter) Write(p []byte) (int, error) {
	if w.left || strings.Contains(string(p), w.leaveAt) {
		w.left = true
		w.leave()
		return 0, io.ErrClosedPipe
	}
	return w.body.Write(p)
}

// A stream whose end the upstream had already sent completed, even when
// the client leaves while its last events are being written: the call is
// reported as answered, with the upstream's usage, not as cut short.
func TestStreamCompletedWhenTheClientLeftIsNotCutShort(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hello there"},"finish_reason":null}]}`+"\n\n"+
			`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n"+
			`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`+"\n\n"+
			"data: [DONE]\n\n")
	})
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{gatewayKey}, RequireAPIKey: true,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	gate := &recordingGate{}
	s := api.New(a.Router, a, api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey}, Pipeline: pipeline.Stages{Gates: []pipeline.Gate{gate}}},
		clock.Real{}, logging.Discard())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/messages",
		strings.NewReader(`{"model":"oa/m","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("anthropic-version", "2023-06-01")
	w := &leavingWriter{h: http.Header{}, leaveAt: "content_block_stop", leave: cancel}
	s.ServeHTTP(w, req)
	if !w.left || !strings.Contains(w.body.String(), "hello there") {
		t.Fatalf("the client did not get the text and leave at the block's end: %q", w.body.String())
	}
	out := gate.outcomesWait(t, 1)[0]
	if out.CutShort || out.Status != http.StatusOK || out.Usage.OutputTokens != 7 || out.Usage.InputTokens != 11 || out.Usage.Estimated {
		t.Fatalf("outcome of a stream the upstream completed: %+v", out)
	}
}

// unfinished is an adapter whose stream sends some text and then ends
// without a stop event.
type unfinished struct{}

func (unfinished) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	return nil, &llm.Error{Status: http.StatusNotImplemented, Type: llm.ErrServer, Message: "stream only"}
}

func (unfinished) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	return &llm.SliceStream{Events: []llm.Event{
		{Type: llm.EventStart, Model: "m"},
		{Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartText}},
		{Type: llm.EventDelta, Index: 0, Delta: llm.Delta{Text: "half an answer"}},
	}}, nil
}

// TestStreamEndingWithoutStopIsAFailure: an upstream stream that ends
// before its stop event, while the client is still reading, is the
// upstream's failure after the first byte (502, stream_error), not a
// client that went away.
func TestStreamEndingWithoutStopIsAFailure(t *testing.T) {
	table := router.NewTable()
	table.SetProvider("fk", []router.Connection{{ID: "fk#1", Adapter: unfinished{}}})
	gate := &recordingGate{}
	s := api.New(router.New(table, clock.Real{}), noModels{}, api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey},
		Pipeline: pipeline.Stages{Gates: []pipeline.Gate{gate}}}, clock.Real{}, logging.Discard())
	gw := httptest.NewServer(httpx.Wrap(s, logging.Discard(), nil))
	t.Cleanup(gw.Close)

	resp := post(t, gw.URL, `{"model":"fk/m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	body := drain(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "half an answer") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	o := gate.outcomesWait(t, 1)[0]
	if o.Status != http.StatusBadGateway || o.Err == nil || o.Err.Type != pipeline.ErrStreamFailed || !o.CutShort ||
		o.Target.Provider != "fk" || o.Connection != "fk#1" || o.Usage.OutputTokens == 0 {
		t.Fatalf("outcome %+v (error %+v)", o, o.Err)
	}
}

type noModels struct{}

func (noModels) Models() []api.ModelInfo { return nil }
