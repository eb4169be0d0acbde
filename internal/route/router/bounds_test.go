package router

import (
	"context"
	"fmt"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

// stateSizes counts what the router keeps per client-named thing: pinned
// sessions, per-target statistics and round-robin positions.
func stateSizes(r *Router) (pins, stats, rr int) {
	r.pins.mu.Lock()
	pins = len(r.pins.m)
	r.pins.mu.Unlock()
	r.stats.mu.Lock()
	stats = len(r.stats.m)
	r.stats.mu.Unlock()
	rr = r.combos.len()
	return pins, stats, rr
}

// Session ids, model names under a configured provider and names caught
// by a combo mapping are the client's to choose: the router keeps a
// bounded number of each, however many a client sends.
func TestClientNamedStateIsBounded(t *testing.T) {
	r, tbl, _ := setup(t)
	if err := tbl.SetCombo(Combo{Name: "rr", Strategy: StrategyRoundRobin, Targets: []Target{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}}}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.SetMappings([]Mapping{{Pattern: "rr-*", Combo: "rr"}}); err != nil {
		t.Fatal(err)
	}
	const n = 40000
	for i := range n {
		ctx := WithSession(context.Background(), fmt.Sprintf("session-%d", i))
		if _, err := r.Chat(ctx, &llm.Request{Model: fmt.Sprintf("a/model-%d", i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Chat(context.Background(), &llm.Request{Model: fmt.Sprintf("rr-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	pins, stats, rr := stateSizes(r)
	if pins > 10000 || stats > 2048 || rr > 2048 {
		t.Fatalf("after %d sessions and names: %d pins, %d target statistics, %d round-robin positions", n, pins, stats, rr)
	}
	// The latest session is still pinned, and the combo target in use
	// still has its statistics.
	last := WithSession(context.Background(), fmt.Sprintf("session-%d", n-1))
	if _, ok := r.pins.get(sessionOf(last), r.clock.Now()); !ok {
		t.Fatal("the latest session lost its pin")
	}
	if r.stats.Count("a/m") != n {
		t.Fatalf("the combo target lost its statistics: a/m counted %d of %d", r.stats.Count("a/m"), n)
	}
}
