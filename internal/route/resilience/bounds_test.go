package resilience

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// Model lockouts are keyed by the model a client named: a client naming
// endless models (each answered 404 upstream) leaves a bounded number of
// entries, and expired ones are swept.
func TestLockoutsAreBounded(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	tr, err := New(context.Background(), Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	s := tr.Settings()
	s.LockoutEnabled = true
	if err := tr.SetSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	size := func() int {
		tr.mu.RLock()
		defer tr.mu.RUnlock()
		return len(tr.lockouts)
	}
	const n = 20000
	for i := range n {
		tr.Observe("p", fmt.Sprintf("p#%d", i%4+1), fmt.Sprintf("model-%d", i), http.StatusNotFound, 0)
	}
	if got := size(); got > 4096 {
		t.Fatalf("%d lockouts after %d distinct models", got, n)
	}
	// A real lockout made now holds.
	tr.Observe("p", "p#1", "gpt-4o", http.StatusTooManyRequests, 0)
	if ok, _ := tr.Available("p", "p#1", "gpt-4o"); ok {
		t.Fatal("the newest lockout was dropped")
	}
	// Once they expire, the entries go.
	clk.Advance(2 * time.Minute)
	for i := range 2000 {
		tr.Observe("p", "p#1", fmt.Sprintf("later-%d", i), http.StatusOK, 0)
		tr.Observe("q", "q#1", "m", http.StatusNotFound, 0)
	}
	if got := size(); got > 64 {
		t.Fatalf("%d lockouts kept after every one expired", got)
	}
	if tr.active.Load() != int64(size()+len(tr.cooldowns)+len(tr.breakers)) {
		t.Fatalf("active count %d does not match the entries", tr.active.Load())
	}
}

// With Redis, the shared hash holds no more lockouts than a replica: the
// ones dropped to make room, or swept once expired, are removed from it.
func TestSharedLockoutsAreBounded(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	if rdb == nil {
		return
	}
	clk := clock.NewFake(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	tr, err := New(context.Background(), Options{Clock: clk, Redis: rdb, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	s := tr.Settings()
	s.LockoutEnabled = true
	if err := tr.SetSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxLockouts {
		tr.Observe("p", "p#1", fmt.Sprintf("model-%d", i), http.StatusNotFound, 0)
	}
	n, err := rdb.HLen(context.Background(), prefix+"resilience:state").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n > maxLockouts {
		t.Fatalf("%d entries in the shared hash after %d distinct lockouts", n, 3*maxLockouts)
	}
	clk.Advance(2 * time.Minute)
	for range 1024 {
		tr.Observe("q", "q#1", "m", http.StatusNotFound, 0)
	}
	if n, _ = rdb.HLen(context.Background(), prefix+"resilience:state").Result(); n > 2 {
		t.Fatalf("%d entries in the shared hash after every lockout expired", n)
	}
}
