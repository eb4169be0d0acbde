package router

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// counter is a fake adapter whose upstream counts tokens: each count
// pops the next scripted error (nil: answer n).
type counter struct {
	fake
	n      int
	errs   []error
	mu     sync.Mutex
	models []string
	reqs   []*llm.Request
}

func (c *counter) CountTokens(_ context.Context, req *llm.Request, model string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.models = append(c.models, model)
	c.reqs = append(c.reqs, req)
	if len(c.errs) > 0 {
		err := c.errs[0]
		c.errs = c.errs[1:]
		if err != nil {
			return 0, err
		}
	}
	return c.n, nil
}

func (c *counter) asked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.models...)
}

// vetoAll blocks every connection and counts what it hears.
type vetoAll struct {
	mu             sync.Mutex
	asked, observe int
}

func (v *vetoAll) Available(string, string, string) (bool, Block) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.asked++
	return false, Block{Until: time.Now().Add(time.Hour), Status: http.StatusServiceUnavailable, Reason: "open"}
}

func (v *vetoAll) Observe(string, string, string, int, time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.observe++
}

func countReq(model string) *llm.Request {
	return &llm.Request{Model: model, Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "count these words please"}}}}}
}

// A count goes to the target a chat would try first: the session's pin,
// else the first target the key may use, in the listed order; it neither
// consults nor feeds the health tracker and moves no pin. Connections
// are tried in turn on failures another credential may not have.
func TestCountTokensTarget(t *testing.T) {
	tbl := NewTable()
	a1, a2 := &counter{fake: fake{name: "a1"}, n: 41}, &counter{fake: fake{name: "a2"}, n: 41}
	b1 := &counter{fake: fake{name: "b1"}, n: 7}
	c1 := &fake{name: "c1"} // cannot count
	tbl.SetProvider("a", []Connection{{ID: "a1", Adapter: a1}, {ID: "a2", Adapter: a2}})
	tbl.SetProvider("b", []Connection{{ID: "b1", Adapter: b1,
		Prepare: func(req *llm.Request, model string) *llm.Request {
			c := *req
			c.User = "prepared for " + model
			return &c
		}}})
	tbl.SetProvider("c", []Connection{{ID: "c1", Adapter: c1}})
	if err := tbl.SetCombo(Combo{Name: "rr", Strategy: StrategyRoundRobin, Targets: []Target{{Provider: "a", Model: "ma"}, {Provider: "b", Model: "mb"}}}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.SetCombo(Combo{Name: "cfirst", Strategy: StrategyPriority, Targets: []Target{{Provider: "c", Model: "mc"}, {Provider: "a", Model: "ma"}}}); err != nil {
		t.Fatal(err)
	}
	r := New(tbl, clock.Real{})
	ctx := context.Background()

	// The combo's first listed target, every time (no rotation).
	for range 3 {
		res, err := r.CountTokens(ctx, countReq("rr"))
		if err != nil || res.Tokens != 41 || res.Estimated || res.Target.String() != "a/ma" {
			t.Fatalf("rr: %+v %v", res, err)
		}
	}
	// A key that may not use provider a counts on b, whose connection's
	// Prepare applies.
	fctx := WithFilter(ctx, func(t Target) bool { return t.Provider != "a" })
	res, err := r.CountTokens(fctx, countReq("rr"))
	if err != nil || res.Tokens != 7 || res.Target.String() != "b/mb" || b1.reqs[0].User != "prepared for mb" {
		t.Fatalf("filtered: %+v %v", res, err)
	}
	var ex *ExhaustedError
	if _, err := r.CountTokens(fctx, countReq("a/ma")); !errors.As(err, &ex) || ex.Last.Status != http.StatusForbidden {
		t.Fatalf("model the key may not use: %v", err)
	}
	// A first target that cannot count is estimated, even when a later
	// one could.
	res, err = r.CountTokens(ctx, countReq("cfirst"))
	if err != nil || !res.Estimated || res.Tokens != llm.EstimateInput(countReq("cfirst")) || res.Target.String() != "c/mc" || c1.count() != 0 {
		t.Fatalf("cfirst: %+v %v", res, err)
	}

	// A session pinned to b (by chats) counts on b.
	sctx := WithSession(ctx, "s1")
	if _, err := r.Chat(ctx, countReq("rr")); err != nil { // round-robin: a first …
		t.Fatal(err)
	}
	if _, err := r.Chat(sctx, countReq("rr")); err != nil { // … then b
		t.Fatal(err)
	}
	if pinned, _ := r.pins.get("s1", time.Now()); pinned.target != "b/mb" {
		t.Fatalf("session pinned to %q", pinned.target)
	}
	res, err = r.CountTokens(sctx, countReq("rr"))
	if err != nil || res.Target.String() != "b/mb" || res.Tokens != 7 {
		t.Fatalf("pinned to b/mb, counted on %+v %v", res, err)
	}

	// The health tracker is neither asked nor told.
	h := &vetoAll{}
	r.SetHealth(h)
	before := len(a1.asked()) + len(a2.asked())
	if res, err := r.CountTokens(ctx, countReq("a/ma")); err != nil || res.Estimated {
		t.Fatalf("with every connection vetoed for chat: %+v %v", res, err)
	}
	if h.asked != 0 || h.observe != 0 || len(a1.asked())+len(a2.asked()) != before+1 {
		t.Fatalf("health asked %d, told %d", h.asked, h.observe)
	}
	r.SetHealth(nil)

	// Failures: a 500 tries the next connection, then estimates; a 404
	// estimates at once; a 400 is the client's.
	a1.errs, a2.errs = []error{status(500)}, []error{status(500)}
	res, err = r.CountTokens(ctx, countReq("a/ma"))
	if err != nil || !res.Estimated || len(res.Attempts) != 2 || res.Attempts[0].Status != 500 {
		t.Fatalf("500 on both: %+v %v", res, err)
	}
	a1.errs, a2.errs = []error{status(404)}, []error{status(404)}
	res, err = r.CountTokens(ctx, countReq("a/ma"))
	if err != nil || !res.Estimated || len(res.Attempts) != 1 {
		t.Fatalf("404: %+v %v", res, err)
	}
	a1.errs, a2.errs = []error{status(400)}, []error{status(400)}
	if _, err := r.CountTokens(ctx, countReq("a/ma")); !errors.As(err, &ex) || ex.Last.Status != 400 || ex.Last.Provider != "a" {
		t.Fatalf("400: %v", err)
	}
	a1.errs, a2.errs = []error{status(401)}, []error{status(429)}
	res, err = r.CountTokens(ctx, countReq("a/ma"))
	if err != nil || !res.Estimated || len(res.Attempts) != 2 {
		t.Fatalf("401 and 429: %+v %v", res, err)
	}
	a1.n, a2.n = -1, -1 // a negative count is no count
	res, err = r.CountTokens(ctx, countReq("a/ma"))
	if err != nil || !res.Estimated || len(res.Attempts) != 2 {
		t.Fatalf("negative counts: %+v %v", res, err)
	}
	if _, err := r.CountTokens(ctx, countReq("nope/x")); err == nil {
		t.Fatal("unknown model counted")
	}
}
