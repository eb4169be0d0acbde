package router

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// fake is a scripted adapter: each call pops the next outcome.
type fake struct {
	mu       sync.Mutex
	name     string
	outcomes []outcome
	calls    []string // models asked for
}

type outcome struct {
	err    error
	events []llm.Event // for Stream; an EventError mid-list simulates a failure after the first byte
}

func (f *fake) next(model string) outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, model)
	if len(f.outcomes) == 0 {
		return outcome{}
	}
	o := f.outcomes[0]
	if len(f.outcomes) > 1 {
		f.outcomes = f.outcomes[1:]
	}
	return o
}

func okResponse(who string) *llm.Response {
	return &llm.Response{ID: who, Content: []llm.Part{{Type: llm.PartText, Text: "from " + who}}, StopReason: llm.StopEnd}
}

func (f *fake) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	o := f.next(model)
	if o.err != nil {
		return nil, o.err
	}
	return okResponse(f.name), nil
}

func (f *fake) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	o := f.next(model)
	if o.err != nil {
		return nil, o.err
	}
	evs := o.events
	if evs == nil {
		evs = llm.Events(okResponse(f.name))
	}
	return &llm.SliceStream{Events: evs}, nil
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func status(code int) error {
	return &llm.Error{Status: code, Type: llm.TypeForStatus(code), Message: http.StatusText(code)}
}

func setup(t *testing.T) (*Router, *Table, map[string]*fake) {
	t.Helper()
	fakes := map[string]*fake{}
	tbl := NewTable()
	for _, p := range []string{"a", "b", "c"} {
		f1, f2 := &fake{name: p + "1"}, &fake{name: p + "2"}
		fakes[p+"1"], fakes[p+"2"] = f1, f2
		tbl.SetProvider(p, []Connection{{ID: p + "1", Adapter: f1}, {ID: p + "2", Adapter: f2}})
	}
	return New(tbl, clock.Real{}), tbl, fakes
}

func TestResolve(t *testing.T) {
	_, tbl, _ := setup(t)
	tbl.SetAlias("fast", "smart")
	tbl.SetAlias("smart", "b/model-x")
	if err := tbl.SetCombo(Combo{Name: "team", Strategy: StrategyPriority, Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.SetMappings([]Mapping{{Pattern: "claude-*", Combo: "team"}}); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"a/gpt-4o":        "a/gpt-4o",
		"nebius-x/y":      "", // unknown provider
		"c/Qwen/Qwen3-8B": "c/Qwen/Qwen3-8B",
		"fast":            "b/model-x",
		"team":            "a/m1",
		"claude-sonnet-4": "a/m1",
		"gpt-unknown":     "",
	}
	for in, want := range cases {
		ts, _, err := tbl.Resolve(in)
		if want == "" {
			if !errors.Is(err, ErrUnknownModel) {
				t.Errorf("%s: got %v, %v; want unknown", in, ts, err)
			}
			continue
		}
		if err != nil || ts[0].String() != want {
			t.Errorf("%s: got %v, %v; want %s", in, ts, err, want)
		}
	}
	if err := tbl.SetCombo(Combo{Name: "x", Strategy: "bogus", Targets: []Target{{Provider: "a", Model: "m"}}}); err == nil {
		t.Error("unknown strategy accepted")
	}
	if err := tbl.SetMappings([]Mapping{{Pattern: "[", Combo: "x"}}); err == nil {
		t.Error("bad glob accepted")
	}
}

func TestFallbackAcrossConnectionsAndTargets(t *testing.T) {
	for _, code := range []int{500, 502, 503, 429, 408, 0} {
		r, tbl, fakes := setup(t)
		tbl.SetCombo(Combo{Name: "combo", Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}})
		var err error = status(code)
		if code == 0 {
			err = errors.New("dial tcp: connection refused")
		}
		fakes["a1"].outcomes = []outcome{{err: err}}
		fakes["a2"].outcomes = []outcome{{err: err}}
		res, xerr := r.Chat(context.Background(), &llm.Request{Model: "combo"})
		if xerr != nil {
			t.Fatalf("status %d: %v", code, xerr)
		}
		if res.Target.Provider != "b" || len(res.Attempts) != 3 || res.Response.ID != "b1" && res.Response.ID != "b2" {
			t.Fatalf("status %d: target %v attempts %+v", code, res.Target, res.Attempts)
		}
		if fakes["b1"].count()+fakes["b2"].count() != 1 {
			t.Fatalf("status %d: b called %d+%d times", code, fakes["b1"].count(), fakes["b2"].count())
		}
	}
}

func TestNoFallbackOnClientErrors(t *testing.T) {
	r, tbl, fakes := setup(t)
	tbl.SetCombo(Combo{Name: "combo", Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}})
	fakes["a1"].outcomes = []outcome{{err: status(400)}}
	fakes["a2"].outcomes = []outcome{{err: status(400)}}
	_, err := r.Chat(context.Background(), &llm.Request{Model: "combo"})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Last.Status != 400 || len(ex.Attempts) != 1 {
		t.Fatalf("400 must not fall back: %v", err)
	}
	if fakes["b1"].count()+fakes["b2"].count() != 0 {
		t.Fatal("b was tried after a 400")
	}
	// A credential failure (401) tries the provider's other connection.
	r, _, fakes = setup(t)
	fakes["a1"].outcomes = []outcome{{err: status(401)}}
	fakes["a2"].outcomes = []outcome{{err: status(401)}}
	res, err := r.Chat(context.Background(), &llm.Request{Model: "a/m"})
	if err == nil || res != nil {
		t.Fatalf("both credentials rejected, want an error")
	}
	if fakes["a1"].count() != 1 || fakes["a2"].count() != 1 {
		t.Fatalf("401 must try the next credential: %d %d", fakes["a1"].count(), fakes["a2"].count())
	}
}

func TestAllFailReportsLastErrorAndAttempts(t *testing.T) {
	r, tbl, fakes := setup(t)
	tbl.SetCombo(Combo{Name: "combo", Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}})
	for _, k := range []string{"a1", "a2"} {
		fakes[k].outcomes = []outcome{{err: status(503)}}
	}
	for _, k := range []string{"b1", "b2"} {
		fakes[k].outcomes = []outcome{{err: status(429)}}
	}
	_, err := r.Chat(context.Background(), &llm.Request{Model: "combo"})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Last.Status != 429 || ex.Last.Provider != "b" || len(ex.Attempts) != 4 {
		t.Fatalf("exhausted: %v", err)
	}
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 429 {
		t.Fatal("ExhaustedError must unwrap to the last llm.Error")
	}
}

func TestStreamFallbackOnlyBeforeFirstEvent(t *testing.T) {
	r, tbl, fakes := setup(t)
	tbl.SetCombo(Combo{Name: "combo", Targets: []Target{{Provider: "a", Model: "m1"}, {Provider: "b", Model: "m2"}}})
	overloaded := &llm.Error{Status: 529, Type: llm.ErrOverloaded, Message: "busy", InStream: true}
	// a1: the upstream answers 200 but its very first event is an error:
	// nothing reached the client yet, so fall back.
	fakes["a1"].outcomes = []outcome{{events: []llm.Event{{Type: llm.EventError, Err: overloaded}}}}
	// a2: fails after the first event: the client already has bytes.
	fakes["a2"].outcomes = []outcome{{events: []llm.Event{{Type: llm.EventStart, ID: "x"}, {Type: llm.EventError, Err: overloaded}}}}
	res, err := r.Stream(context.Background(), &llm.Request{Model: "combo", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Target.Provider != "a" || res.Attempts[len(res.Attempts)-1].Connection != "a2" {
		t.Fatalf("expected to commit to a2 after a1's early error: %+v", res.Attempts)
	}
	_, err = llm.Collect(res.Stream)
	var le *llm.Error
	if !errors.As(err, &le) || le != overloaded {
		t.Fatalf("mid-stream failure must surface to the client: %v", err)
	}
	if fakes["b1"].count()+fakes["b2"].count() != 0 {
		t.Fatal("a mid-stream failure was retried on another target")
	}
}

func TestStreamFirstEventReplayed(t *testing.T) {
	r, _, _ := setup(t)
	res, err := r.Stream(context.Background(), &llm.Request{Model: "c/m", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := llm.Collect(res.Stream)
	if err != nil || !strings.HasPrefix(resp.Text(), "from c") {
		t.Fatalf("stream lost its first event: %+v %v", resp, err)
	}
	// An empty upstream stream is a failure, not a success.
	_, tbl, fakes := setup(t)
	r = New(tbl, clock.Real{})
	fakes["a1"].outcomes = []outcome{{events: []llm.Event{}}}
	fakes["a2"].outcomes = []outcome{{events: []llm.Event{}}}
	if _, err := r.Stream(context.Background(), &llm.Request{Model: "a/m"}); err == nil {
		t.Fatal("empty stream accepted")
	}
}

func TestConnectionsRoundRobin(t *testing.T) {
	r, _, fakes := setup(t)
	for i := 0; i < 10; i++ {
		if _, err := r.Chat(context.Background(), &llm.Request{Model: "a/m"}); err != nil {
			t.Fatal(err)
		}
	}
	if fakes["a1"].count() != 5 || fakes["a2"].count() != 5 {
		t.Fatalf("connections not rotated: %d %d", fakes["a1"].count(), fakes["a2"].count())
	}
}

func TestStrategies(t *testing.T) {
	r, tbl, fakes := setup(t)
	targets := []Target{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}, {Provider: "c", Model: "m"}}
	tbl.SetCombo(Combo{Name: "rr", Strategy: StrategyRoundRobin, Targets: targets})
	for i := 0; i < 9; i++ {
		r.Chat(context.Background(), &llm.Request{Model: "rr"})
	}
	for _, p := range []string{"a", "b", "c"} {
		if n := fakes[p+"1"].count() + fakes[p+"2"].count(); n != 3 {
			t.Fatalf("round-robin gave %s %d of 9", p, n)
		}
	}

	// Weighted: a heavy target is picked first far more often.
	w := []Target{{Provider: "a", Model: "m", Weight: 9}, {Provider: "b", Model: "m", Weight: 1}}
	first := map[string]int{}
	for i := 0; i < 2000; i++ {
		first[r.order("w", w, StrategyWeighted)[0].Provider]++
	}
	if first["a"] < 1600 || first["b"] < 100 {
		t.Fatalf("weighted first picks %v, want about 1800/200", first)
	}

	// Least-used and latency read the stats.
	s := r.Stats()
	for i := 0; i < 5; i++ {
		s.Record("a/m", 50*time.Millisecond, true)
		s.Record("b/m", 10*time.Millisecond, true)
	}
	s.Record("c/m", 30*time.Millisecond, true)
	if got := r.order("lu", targets, StrategyLeastUsed)[0].Provider; got != "c" {
		t.Fatalf("least-used picked %s", got)
	}
	if got := r.order("lat", targets, StrategyLatency); got[0].Provider != "b" || got[1].Provider != "c" || got[2].Provider != "a" {
		t.Fatalf("latency order %v", got)
	}

	// Cost-optimized uses prices; unknown prices go last.
	r.SetPricer(prices{"a/m": 3, "c/m": 1})
	if got := r.order("cost", targets, StrategyCostOptimized); got[0].Provider != "c" || got[1].Provider != "a" || got[2].Provider != "b" {
		t.Fatalf("cost order %v", got)
	}
}

type prices map[string]float64

func (p prices) Price(provider, model string) (float64, float64, bool) {
	v, ok := p[provider+"/"+model]
	return v, v, ok
}

func TestP95(t *testing.T) {
	s := NewStats()
	for i := 1; i <= 100; i++ {
		s.Record("k", time.Duration(i)*time.Millisecond, true)
	}
	if p, ok := s.P95("k"); !ok || p != 95*time.Millisecond {
		t.Fatalf("p95 %v", p)
	}
	if _, ok := s.P95("none"); ok {
		t.Fatal("p95 of nothing")
	}
}

func TestUnknownModelIs404(t *testing.T) {
	r, _, _ := setup(t)
	_, err := r.Chat(context.Background(), &llm.Request{Model: "nope"})
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 404 {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestStickySessions(t *testing.T) {
	r, tbl, fakes := setup(t)
	targets := []Target{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}, {Provider: "c", Model: "m"}}
	tbl.SetCombo(Combo{Name: "rr", Strategy: StrategyRoundRobin, Targets: targets})
	ctx := WithSession(context.Background(), "sess-1")
	first, err := r.Chat(ctx, &llm.Request{Model: "rr"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		res, err := r.Chat(ctx, &llm.Request{Model: "rr"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Target != first.Target || res.Attempts[0].Connection != first.Attempts[0].Connection {
			t.Fatalf("session moved from %v/%s to %v/%s", first.Target, first.Attempts[0].Connection, res.Target, res.Attempts[0].Connection)
		}
	}
	// Without a session the combo rotates.
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		res, _ := r.Chat(context.Background(), &llm.Request{Model: "rr"})
		seen[res.Target.Provider] = true
	}
	if len(seen) != 3 {
		t.Fatalf("round-robin without a session visited %v", seen)
	}
	// A failing pinned target is left: fallback still works, and the
	// session moves to where it was served.
	p := first.Target.Provider
	fakes[p+"1"].outcomes = []outcome{{err: status(503)}}
	fakes[p+"2"].outcomes = []outcome{{err: status(503)}}
	res, err := r.Chat(ctx, &llm.Request{Model: "rr"})
	if err != nil || res.Target.Provider == p {
		t.Fatalf("pinned target down: %v %v", res, err)
	}
	next, _ := r.Chat(ctx, &llm.Request{Model: "rr"})
	if next.Target != res.Target {
		t.Fatalf("session did not follow the fallback: %v then %v", res.Target, next.Target)
	}
	// Priority keeps its declared order even for a pinned session.
	fakes[p+"1"].outcomes, fakes[p+"2"].outcomes = nil, nil
	tbl.SetCombo(Combo{Name: "prio", Strategy: StrategyPriority, Targets: targets})
	sctx := WithSession(context.Background(), "sess-2")
	r.pins.set("sess-2", pin{target: "c/m", until: time.Now().Add(time.Hour)}, time.Now())
	if res, _ := r.Chat(sctx, &llm.Request{Model: "prio"}); res.Target.Provider != "a" {
		t.Fatalf("priority reordered by a session: %v", res.Target)
	}
}

// seenTemp records the temperature each call carried.
type seenTemp struct {
	fake
	temps []*float64
}

func (s *seenTemp) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	s.mu.Lock()
	s.temps = append(s.temps, req.Temperature)
	s.mu.Unlock()
	return s.fake.Chat(ctx, req, model)
}

// Each attempt is prepared for its own target: a fallback target whose
// model rejects temperature gets a request without it, while the
// client's request and the first attempt keep it.
func TestPreparePerAttempt(t *testing.T) {
	first := &seenTemp{fake: fake{name: "a", outcomes: []outcome{{err: &llm.Error{Status: 500, Type: llm.ErrServer, Message: "boom"}}}}}
	second := &seenTemp{fake: fake{name: "b"}}
	tb := NewTable()
	tb.SetProvider("a", []Connection{{ID: "a#1", Adapter: first}})
	tb.SetProvider("b", []Connection{{ID: "b#1", Adapter: second, Prepare: func(req *llm.Request, model string) *llm.Request {
		if model != "reasoner" {
			t.Errorf("prepare got model %q", model)
		}
		c := *req
		c.Temperature = nil
		return &c
	}}})
	if err := tb.SetCombo(Combo{Name: "c", Strategy: "priority", Targets: []Target{{Provider: "a", Model: "chat"}, {Provider: "b", Model: "reasoner"}}}); err != nil {
		t.Fatal(err)
	}
	temp := 0.5
	req := &llm.Request{Model: "c", Temperature: &temp}
	res, err := New(tb, clock.Real{}).Chat(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target.Provider != "b" || len(first.temps) != 1 || first.temps[0] == nil || len(second.temps) != 1 || second.temps[0] != nil {
		t.Fatalf("target %v, first saw %v, second saw %v", res.Target, first.temps, second.temps)
	}
	if req.Temperature == nil {
		t.Fatal("the client's request was changed")
	}
}
