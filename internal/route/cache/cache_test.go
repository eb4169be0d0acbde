package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/cache"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/store"
)

var masterKey = []byte("0123456789abcdef0123456789abcdef")

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func answer(text string) *llm.Response {
	return &llm.Response{ID: "r-" + text, Model: "m", Content: []llm.Part{{Type: llm.PartText, Text: text}},
		StopReason: llm.StopEnd, Usage: llm.Usage{InputTokens: 3, OutputTokens: 2}, Created: t0}
}

func size(r *llm.Response) int {
	b, _ := json.Marshal(r)
	return len(b)
}

func wantHit(t *testing.T, c *cache.Cache, key, text string) {
	t.Helper()
	r, ok := c.Get(context.Background(), key)
	if !ok || r.Text() != text {
		t.Fatalf("Get(%q) = %v, %v; want %q", key, r, ok, text)
	}
}

func wantMiss(t *testing.T, c *cache.Cache, key string) {
	t.Helper()
	if r, ok := c.Get(context.Background(), key); ok {
		t.Fatalf("Get(%q) = %q, want a miss", key, r.Text())
	}
}

func TestLRUBoundedByEntries(t *testing.T) {
	ctx := context.Background()
	c := cache.New(cache.Options{MaxEntries: 3, Clock: clock.NewFake(t0)})
	for _, k := range []string{"a", "b", "c"} {
		c.Put(ctx, k, answer(k))
	}
	wantHit(t, c, "a", "a") // a is now the most recent; b the least
	c.Put(ctx, "d", answer("d"))
	wantMiss(t, c, "b")
	for _, k := range []string{"a", "c", "d"} {
		wantHit(t, c, k, k)
	}
	c.Put(ctx, "e", answer("e")) // the order is now a c d e: a goes
	wantMiss(t, c, "a")
	st, err := c.Stats(ctx)
	if err != nil || st.MemorySize != 3 || st.MemoryMaxSize != 3 || st.DBSize != 0 || st.Tier != "memory" {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestLRUBoundedByBytes(t *testing.T) {
	ctx := context.Background()
	one := size(answer("x"))
	c := cache.New(cache.Options{MaxEntries: 100, MaxBytes: 2*one + one/2, Clock: clock.NewFake(t0)})
	c.Put(ctx, "x", answer("x"))
	c.Put(ctx, "y", answer("y"))
	c.Put(ctx, "z", answer("z"))
	wantMiss(t, c, "x")
	wantHit(t, c, "y", "y")
	wantHit(t, c, "z", "z")
	st, _ := c.Stats(ctx)
	if st.MemorySize != 2 || st.MemoryBytes != 2*one {
		t.Fatalf("stats %+v, entry %d bytes", st, one)
	}
	// An answer larger than the whole budget is not kept (and evicts nothing).
	c.Put(ctx, "big", answer(strings.Repeat("b", 4*one)))
	wantMiss(t, c, "big")
	wantHit(t, c, "y", "y")
}

func TestTTL(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	c := cache.New(cache.Options{TTL: time.Minute, Clock: clk})
	c.Put(ctx, "k", answer("v"))
	clk.Advance(59 * time.Second)
	wantHit(t, c, "k", "v")
	clk.Advance(time.Second)
	wantMiss(t, c, "k")
	if st, _ := c.Stats(ctx); st.MemorySize != 0 || st.Hits != 1 || st.Misses != 1 || st.HitRate != 0.5 {
		t.Fatalf("stats %+v", st)
	}
}

func sqliteStore(t *testing.T, path string) *store.Store {
	t.Helper()
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := store.New(context.Background(), db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreTierSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "omni.db")
	a, b := sqliteStore(t, path), sqliteStore(t, path)
	runTier(t, a, b)
}

func TestStoreTierPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	open := func() *store.Store {
		db, err := sqldb.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := store.New(context.Background(), db, masterKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	runTier(t, open(), open())
}

func TestRedisTier(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	runTier(t, cache.NewRedisTier(rc, prefix), cache.NewRedisTier(rc, prefix))
}

// runTier checks two caches (two replicas) over one shared tier: a hit
// put by one is served by the other and promoted into its memory, the
// tier expires entries and stays within MaxRows, and Clear empties it.
func runTier(t *testing.T, ta, tb cache.Tier) {
	ctx := context.Background()
	// Redis expires entries in real time, so the clock starts at now.
	clk := clock.NewFake(time.Now().Truncate(time.Millisecond))
	a := cache.New(cache.Options{Tier: ta, TTL: time.Hour, MaxRows: 5, Clock: clk})
	b := cache.New(cache.Options{Tier: tb, TTL: time.Hour, MaxRows: 5, Clock: clk})
	if _, _, err := a.Clear(ctx); err != nil {
		t.Fatal(err)
	}

	a.Put(ctx, "k", answer("shared"))
	wantHit(t, b, "k", "shared")
	if st, err := b.Stats(ctx); err != nil || st.MemorySize != 1 || st.DBSize != 1 {
		t.Fatalf("b after a promoted hit: %+v, %v", st, err)
	}

	// Bounded: beyond MaxRows the oldest entries go.
	for i := range 12 {
		clk.Advance(time.Millisecond)
		a.Put(ctx, fmt.Sprintf("n%d", i), answer(fmt.Sprint(i)))
	}
	fresh := cache.New(cache.Options{Tier: tb, TTL: time.Hour, MaxRows: 5, Clock: clk})
	if st, _ := fresh.Stats(ctx); st.DBSize != 5 {
		t.Fatalf("tier holds %d entries, want 5", st.DBSize)
	}
	wantMiss(t, fresh, "k")
	wantMiss(t, fresh, "n6")
	for i := 7; i < 12; i++ {
		wantHit(t, fresh, fmt.Sprintf("n%d", i), fmt.Sprint(i))
	}

	// Expired entries are neither served nor counted.
	clk.Advance(2 * time.Hour)
	other := cache.New(cache.Options{Tier: tb, TTL: time.Hour, MaxRows: 5, Clock: clk})
	wantMiss(t, other, "n11")
	if st, _ := other.Stats(ctx); st.DBSize != 0 {
		t.Fatalf("expired entries counted: %+v", st)
	}

	// Clear empties memory and the shared tier.
	clk.Advance(-2 * time.Hour)
	a.Put(ctx, "c", answer("c"))
	mem, tier, err := a.Clear(ctx)
	if err != nil || mem == 0 || tier == 0 {
		t.Fatalf("clear: %d %d %v", mem, tier, err)
	}
	wantMiss(t, a, "c")
	wantMiss(t, other, "c")
}
