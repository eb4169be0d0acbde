package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// adapter answers every chat with "answer", or streams events when set;
// it counts the calls it gets.
type adapter struct {
	mu     sync.Mutex
	calls  int
	events []llm.Event
	err    error
}

func (a *adapter) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return nil, a.err
	}
	return &llm.Response{Model: "m", Content: []llm.Part{{Type: llm.PartText, Text: "answer"}}, StopReason: llm.StopEnd,
		Usage: llm.Usage{InputTokens: 3, OutputTokens: 1}}, nil
}

func (a *adapter) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return &llm.SliceStream{Events: a.events}, nil
}

func (a *adapter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// gate records the calls it admits (with what Billing works out) and the
// outcomes it learns, or refuses with refuse.
type gate struct {
	refuse   error
	calls    []pipeline.Call
	unpriced []string
	outcomes []pipeline.Outcome
}

func (g *gate) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	if g.refuse != nil {
		return nil, nil, g.refuse
	}
	_, unpriced := c.Billing()
	g.calls, g.unpriced = append(g.calls, *c), append(g.unpriced, unpriced)
	return ctx, func(o pipeline.Outcome) { g.outcomes = append(g.outcomes, o) }, nil
}

type mapCache map[string]*llm.Response

func (c mapCache) Get(_ context.Context, k string) (*llm.Response, bool) { r, ok := c[k]; return r, ok }
func (c mapCache) Put(_ context.Context, k string, r *llm.Response)      { c[k] = r }

// onceIdem keeps the first committed answer per key.
type onceIdem map[string]*llm.Response

func (o onceIdem) Begin(_ context.Context, k string) (*llm.Response, func(*llm.Response), error) {
	if r := o[k]; r != nil {
		return r, nil, nil
	}
	return nil, func(r *llm.Response) {
		if r != nil {
			o[k] = r
		}
	}, nil
}

func engine(up *adapter, st pipeline.Stages) *pipeline.Engine {
	table := router.NewTable()
	table.SetProvider("fk", []router.Connection{{ID: "fk#1", Adapter: up}})
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	return &pipeline.Engine{Router: router.New(table, clk), Stages: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
}

func request(temperature float64, stream bool) *llm.Request {
	return &llm.Request{Model: "fk/m", Temperature: &temperature, Stream: stream,
		Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}}}
}

func TestExecuteCachesWhatTheOriginAllows(t *testing.T) {
	up, g, cache := &adapter{}, &gate{}, mapCache{}
	e := engine(up, pipeline.Stages{Gates: []pipeline.Gate{g}, Cache: cache})
	o := &pipeline.Origin{KeyID: "k1", Endpoint: "/v1/chat/completions", Session: "s1"}

	a, err := e.Execute(context.Background(), o, request(0, false))
	if err != nil || a.Cache != "MISS" || a.Model != "fk/m" || a.Response == nil || a.Stream != nil || a.Idempotent {
		t.Fatalf("first: %+v, %v", a, err)
	}
	a, err = e.Execute(context.Background(), o, request(0, true))
	if err != nil || a.Cache != "HIT" || a.Model != "" || a.Stream == nil || up.count() != 1 {
		t.Fatalf("streamed hit: %+v, %v, %d upstream calls", a, err, up.count())
	}
	if got := g.outcomes[1]; got.Status != pipeline.StatusOK || got.Cache != "HIT" || g.outcomes[0].Cache != "MISS" {
		t.Fatalf("outcomes %+v", g.outcomes)
	}
	if c := g.calls[0]; c.KeyID != "k1" || c.Endpoint != "/v1/chat/completions" || c.Session != "s1" || c.Model != "fk/m" {
		t.Fatalf("call %+v", c)
	}

	// Sampling at temperature 1 is cached only when the client asks.
	if a, _ := e.Execute(context.Background(), o, request(1, false)); a.Cache != "" {
		t.Fatalf("temperature 1: cache %q", a.Cache)
	}
	o.Cache = pipeline.CacheWanted
	if a, _ := e.Execute(context.Background(), o, request(1, false)); a.Cache != "MISS" {
		t.Fatalf("cache wanted: %q", a.Cache)
	}
	o.Cache = pipeline.CacheBypass
	if a, _ := e.Execute(context.Background(), o, request(0, false)); a.Cache != "" || up.count() != 4 {
		t.Fatalf("bypass: cache %q, %d upstream calls", a.Cache, up.count())
	}
	// Another key shares no entry.
	o = &pipeline.Origin{KeyID: "k2", Endpoint: "/v1/chat/completions"}
	if a, _ := e.Execute(context.Background(), o, request(0, false)); a.Cache != "MISS" {
		t.Fatalf("another key: %q", a.Cache)
	}
}

func TestExecuteReplaysAnIdempotencyKey(t *testing.T) {
	up, g := &adapter{}, &gate{}
	e := engine(up, pipeline.Stages{Gates: []pipeline.Gate{g}, Idempotency: onceIdem{}})
	o := &pipeline.Origin{KeyID: "k1", Endpoint: "/v1/messages", IdempotencyKey: "once"}
	if a, err := e.Execute(context.Background(), o, request(1, false)); err != nil || a.Idempotent {
		t.Fatalf("first: %+v, %v", a, err)
	}
	a, err := e.Execute(context.Background(), o, request(1, false))
	if err != nil || !a.Idempotent || a.Response == nil || a.Response.Content[0].Text != "answer" || up.count() != 1 || len(g.calls) != 1 {
		t.Fatalf("replay: %+v, %v, %d upstream calls, %d admitted", a, err, up.count(), len(g.calls))
	}
	// The key names the request: another body, endpoint or gateway key
	// with the same client key runs anew.
	if a, _ := e.Execute(context.Background(), o, request(0.5, false)); a.Idempotent {
		t.Fatal("another body was replayed")
	}
	if a, _ := e.Execute(context.Background(), &pipeline.Origin{KeyID: "k1", Endpoint: "/v1/chat/completions", IdempotencyKey: "once"}, request(1, false)); a.Idempotent {
		t.Fatal("another endpoint was replayed")
	}
	if a, _ := e.Execute(context.Background(), &pipeline.Origin{KeyID: "k2", Endpoint: "/v1/messages", IdempotencyKey: "once"}, request(1, false)); a.Idempotent {
		t.Fatal("another gateway key was replayed")
	}
	if up.count() != 4 {
		t.Fatalf("%d upstream calls, want 4", up.count())
	}
}

func TestExecuteFailureReachesEveryAdmittingGate(t *testing.T) {
	up := &adapter{err: &llm.Error{Status: 529, Type: llm.ErrOverloaded, Message: "busy"}}
	first, refusing := &gate{}, &gate{refuse: &llm.Error{Status: 429, Type: llm.ErrRateLimit, Message: "slow down"}}
	e := engine(up, pipeline.Stages{Gates: []pipeline.Gate{first, refusing}})
	e.ClientStatus = func(_ context.Context, le *llm.Error) int { return le.Status + 1 } // what the dialect answers
	_, err := e.Execute(context.Background(), &pipeline.Origin{}, request(1, false))
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 429 || up.count() != 0 {
		t.Fatalf("refusal: %v, %d upstream calls", err, up.count())
	}
	if len(first.outcomes) != 1 || first.outcomes[0].Status != 430 || first.outcomes[0].Err != le {
		t.Fatalf("outcomes of the gate before the refusal: %+v", first.outcomes)
	}

	e.Stages.Gates = []pipeline.Gate{first}
	if _, err := e.Execute(context.Background(), &pipeline.Origin{}, request(1, false)); err == nil {
		t.Fatal("the upstream's failure was not returned")
	}
	if o := first.outcomes[1]; o.Status != 530 || o.Err == nil || o.Target.Provider != "fk" || o.Connection != "fk#1" {
		t.Fatalf("outcome of the failed call: %+v", o)
	}
}

func TestStreamOutcomes(t *testing.T) {
	start := []llm.Event{{Type: llm.EventStart, Model: "m"}, {Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartText}},
		{Type: llm.EventDelta, Index: 0, Delta: llm.Delta{Text: "half an answer"}}}
	stop := []llm.Event{{Type: llm.EventPartStop, Index: 0}, {Type: llm.EventStop, StopReason: llm.StopEnd,
		Usage: &llm.Usage{InputTokens: 11, OutputTokens: 7}}}
	for _, c := range []struct {
		name    string
		events  []llm.Event
		read    int // events the client reads before closing; -1: all
		status  int
		errType llm.ErrorType
		cut     bool
	}{
		{"complete", append(append([]llm.Event{}, start...), stop...), -1, pipeline.StatusOK, "", false},
		{"ended without its stop event", start, -1, 502, pipeline.ErrStreamFailed, true},
		{"closed by the client", append(append([]llm.Event{}, start...), stop...), 3, pipeline.StatusClientClosed, llm.ErrInvalidRequest, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			up, g := &adapter{events: c.events}, &gate{}
			e := engine(up, pipeline.Stages{Gates: []pipeline.Gate{g}})
			a, err := e.Execute(context.Background(), &pipeline.Origin{}, request(1, true))
			if err != nil || a.Stream == nil || a.Model != "fk/m" {
				t.Fatalf("%+v, %v", a, err)
			}
			for i := 0; c.read < 0 || i < c.read; i++ {
				if _, err := a.Stream.Next(); err != nil {
					if !errors.Is(err, io.EOF) && c.errType == "" {
						t.Fatal(err)
					}
					break
				}
			}
			if len(g.outcomes) != 0 && c.read >= 0 {
				t.Fatalf("outcome before the stream ended: %+v", g.outcomes)
			}
			a.Stream.Close()
			if len(g.outcomes) != 1 {
				t.Fatalf("%d outcomes, want 1", len(g.outcomes))
			}
			o := g.outcomes[0]
			if o.Status != c.status || o.CutShort != c.cut || (o.Err == nil) != (c.errType == "") || o.Err != nil && o.Err.Type != c.errType {
				t.Fatalf("outcome %+v (error %+v)", o, o.Err)
			}
			if o.Usage.OutputTokens == 0 || c.cut != o.Usage.Estimated {
				t.Fatalf("usage %+v", o.Usage)
			}
		})
	}
}

func TestBillingNamesWhatTheGatewayCannotPrice(t *testing.T) {
	for _, c := range []struct {
		name     string
		dialect  llm.Dialect
		extra    string
		betas    []string
		unpriced string
	}{
		{"plain", llm.DialectOpenAI, `{"n":3}`, nil, ""},
		{"priority tier", llm.DialectOpenAI, `{"service_tier":"priority"}`, nil, `service_tier "priority"`},
		{"built-in tool", llm.DialectResponses, `{"tools":[{"type":"web_search"}]}`, nil, `the built-in tool "web_search"`},
		{"billed beta", llm.DialectAnthropic, ``, []string{"tools-2024, context-1m-2025-08-07"}, "anthropic-beta context-1m-2025-08-07"},
		{"betas of another dialect", llm.DialectOpenAI, `{"x":1}`, []string{"context-1m-2025-08-07"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &gate{}
			e := engine(&adapter{}, pipeline.Stages{Gates: []pipeline.Gate{g}})
			req := request(1, false)
			if c.extra != "" {
				if err := json.Unmarshal([]byte(c.extra), &req.Extra); err != nil {
					t.Fatal(err)
				}
			}
			ctx := llm.WithDialect(context.Background(), c.dialect)
			if _, err := e.Execute(ctx, &pipeline.Origin{Betas: c.betas}, req); err != nil {
				t.Fatal(err)
			}
			if g.unpriced[0] != c.unpriced {
				t.Fatalf("unpriced %q, want %q", g.unpriced[0], c.unpriced)
			}
		})
	}
}

// rewriter adds a system part of its current text to a copy of the
// request.
type rewriter struct{ text string }

func (w *rewriter) Rewrite(_ context.Context, keyID string, req *llm.Request) *llm.Request {
	out := *req
	out.System = append([]llm.Part{{Type: llm.PartText, Text: w.text + "/" + keyID}}, req.System...)
	return &out
}

// The rewriters run before everything else: the gates see the rewritten
// request, the idempotency and cache keys are its, and the caller's
// request is left as it was.
func TestExecuteRewritesFirst(t *testing.T) {
	up, g, rw := &adapter{}, &gate{}, &rewriter{text: "one"}
	e := engine(up, pipeline.Stages{Rewriters: []pipeline.Rewriter{rw}, Gates: []pipeline.Gate{g}, Cache: mapCache{}, Idempotency: onceIdem{}})
	o := &pipeline.Origin{KeyID: "k1", Endpoint: "/v1/chat/completions", IdempotencyKey: "same"}
	req := request(0, false)
	if _, err := e.Execute(context.Background(), o, req); err != nil {
		t.Fatal(err)
	}
	if len(req.System) != 0 {
		t.Fatalf("the caller's request was changed: %+v", req.System)
	}
	if s := g.calls[0].Request.System; len(s) != 1 || s[0].Text != "one/k1" {
		t.Fatalf("the gate saw system %+v", s)
	}
	if a, _ := e.Execute(context.Background(), o, request(0, false)); !a.Idempotent || up.count() != 1 {
		t.Fatalf("same rewrite: %+v, %d upstream calls", a, up.count())
	}
	// Another rewrite is another request: no replay, no cache hit.
	rw.text = "two"
	a, err := e.Execute(context.Background(), o, request(0, false))
	if err != nil || a.Idempotent || a.Cache != "MISS" || up.count() != 2 {
		t.Fatalf("another rewrite: %+v, %v, %d upstream calls", a, err, up.count())
	}
	if _, err := e.CountTokens(context.Background(), o, request(0, false)); err != nil {
		t.Fatal(err)
	}
	if s := g.calls[len(g.calls)-1].Request.System; len(s) != 1 || s[0].Text != "two/k1" {
		t.Fatalf("the token count's gate saw system %+v", s)
	}
}
