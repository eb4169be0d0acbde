package resilience_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/resilience"
)

// memStore is a settings store two replicas share.
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) Setting(_ context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok, nil
}

func (s *memStore) SetSetting(_ context.Context, key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[key] = value
	return nil
}

func TestTwoReplicasShareStateThroughRedis(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	if rdb == nil {
		return
	}
	clk := clock.NewFake(epoch)
	st := &memStore{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	open := func() *resilience.Tracker {
		tr, err := resilience.New(ctx, resilience.Options{Clock: clk, Store: st, Redis: rdb, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); tr.Run(ctx) }()
		testenv.Eventually(t, "subscribed", tr.Ready)
		return tr
	}
	a, b := open(), open()
	if !a.Shared() {
		t.Fatal("not shared")
	}

	// A trips p's breaker: B refuses p too.
	for i := 0; i < 5; i++ {
		a.Observe("p", "p#1", "m", 503, 0)
	}
	testenv.Eventually(t, "B sees A's trip", func() bool { return breakerState(b, "p") == resilience.Open })
	if ok, blk := b.Available("p", "p#2", "m"); ok || !blk.Until.Equal(epoch.Add(30*time.Second)) {
		t.Fatalf("B: ok=%v %+v", ok, blk)
	}
	// A's 429 on q#1 cools it down on B.
	a.Observe("q", "q#1", "m", 429, 0)
	testenv.Eventually(t, "B sees A's cooldown", func() bool { return !available(b, "q", "q#1", "m") })
	// B's success on q#1 clears it on A.
	clk.Advance(3 * time.Second)
	b.Observe("q", "q#1", "m", 200, 0)
	testenv.Eventually(t, "A sees B's success", func() bool { return available(a, "q", "q#1", "m") && len(a.Cooldowns()) == 1 })

	// A third replica starting now finds the open breaker in Redis.
	c := open()
	if breakerState(c, "p") != resilience.Open {
		t.Fatalf("a new replica does not see the open breaker: %+v", c.Breakers())
	}
	// Reset on B closes the breaker everywhere.
	b.Reset(ctx, resilience.Scope{Breakers: true})
	testenv.Eventually(t, "A and C see B's reset", func() bool { return len(a.Breakers()) == 0 && len(c.Breakers()) == 0 })
	if d := open(); len(d.Breakers()) != 0 {
		t.Fatal("the reset breaker is still in Redis")
	}

	// Settings changed on A reach B.
	s := a.Settings()
	s.LockoutEnabled = true
	if err := a.SetSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "B reloads settings", func() bool { return b.Settings().LockoutEnabled })
	b.Observe("p", "p#1", "gone", 404, 0)
	testenv.Eventually(t, "A sees B's lockout", func() bool { return len(a.Lockouts()) == 1 })
	a.Reset(ctx, resilience.Scope{Lockouts: true, Provider: "p", Model: "gone"})
	testenv.Eventually(t, "B sees the lockout cleared", func() bool { return len(b.Lockouts()) == 0 })
}
