package conversations_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/conversations"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store"
)

var ctx = context.Background()

var masterKey = []byte("0123456789abcdef0123456789abcdef")

// opener returns two stores over one fresh backend, as two replicas
// would see it (the memory store: one store twice).
type opener func(t *testing.T, lim pipeline.ResponseLimits, clk clock.Clock) (a, b pipeline.ResponseStore)

func TestMemory(t *testing.T) {
	runSuite(t, func(t *testing.T, lim pipeline.ResponseLimits, clk clock.Clock) (pipeline.ResponseStore, pipeline.ResponseStore) {
		m := pipeline.NewMemoryResponseStore(lim, clk)
		return m, m
	})
}

func TestRedis(t *testing.T) {
	testenv.Redis(t) // skip (or fail when strict) early if unavailable
	runSuite(t, func(t *testing.T, lim pipeline.ResponseLimits, clk clock.Clock) (pipeline.ResponseStore, pipeline.ResponseStore) {
		c, prefix := testenv.Redis(t)
		return conversations.NewRedis(c, prefix, lim, clk), conversations.NewRedis(c, prefix, lim, clk)
	})
}

func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := store.New(ctx, db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T, lim pipeline.ResponseLimits, clk clock.Clock) (pipeline.ResponseStore, pipeline.ResponseStore) {
		path := filepath.Join(t.TempDir(), "omni.db")
		return conversations.NewSQL(openStore(t, path), lim, clk), conversations.NewSQL(openStore(t, path), lim, clk)
	})
}

func TestPostgres(t *testing.T) {
	testenv.Postgres(t)
	runSuite(t, func(t *testing.T, lim pipeline.ResponseLimits, clk clock.Clock) (pipeline.ResponseStore, pipeline.ResponseStore) {
		dsn := testenv.Postgres(t)
		return conversations.NewSQL(openStore(t, dsn), lim, clk), conversations.NewSQL(openStore(t, dsn), lim, clk)
	})
}

// runSuite is the conformance suite of every pipeline.ResponseStore; each
// subtest gets a fresh backend.
func runSuite(t *testing.T, open opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open opener)
	}{
		{"SharedAndScopedToTheKey", testScoped},
		{"SizeCap", testSizeCap},
		{"Expiry", testExpiry},
		{"PerKeyCount", testPerKeyCount},
		{"PerKeyBytes", testPerKeyBytes},
		{"TotalCount", testTotalCount},
		{"TotalBytes", testTotalBytes},
		{"Replace", testReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// newClock starts at the real time: Redis also expires keys in real
// time, which must not come first.
func newClock() *clock.Fake { return clock.NewFake(time.Now().Truncate(time.Millisecond)) }

const size = 64

// conv is a conversation of exactly size bytes naming n.
func conv(n string) []byte {
	s := fmt.Sprintf(`{"n":%q}`, n)
	return []byte(s + strings.Repeat(" ", size-len(s)))
}

func id(n int) string { return fmt.Sprintf("resp_%048x", n) }

func put(t *testing.T, s pipeline.ResponseStore, clk *clock.Fake, owner string, n int) {
	t.Helper()
	clk.Advance(time.Millisecond) // a distinct creation time each
	if err := s.Put(ctx, owner, id(n), conv(fmt.Sprint(n))); err != nil {
		t.Fatalf("put %s/%d: %v", owner, n, err)
	}
}

func want(t *testing.T, s pipeline.ResponseStore, owner string, n int, stored bool) {
	t.Helper()
	v, ok, err := s.Get(ctx, owner, id(n))
	if err != nil {
		t.Fatal(err)
	}
	if ok != stored {
		t.Fatalf("%q's %d: stored %v, want %v", owner, n, ok, stored)
	}
	if ok && string(v) != string(conv(fmt.Sprint(n))) {
		t.Fatalf("%q's %d holds %q", owner, n, v)
	}
}

func testScoped(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{}, clk)
	put(t, a, clk, "key_a", 1)
	put(t, a, clk, "", 2) // anonymous is an owner of its own
	want(t, b, "key_a", 1, true)
	want(t, b, "key_b", 1, false)
	want(t, b, "", 1, false)
	want(t, b, "", 2, true)
	want(t, b, "key_a", 2, false)
	for _, o := range []string{"key_b", ""} {
		if ok, err := b.Delete(ctx, o, id(1)); ok || err != nil {
			t.Fatalf("%q deleted key_a's conversation: %v %v", o, ok, err)
		}
	}
	want(t, a, "key_a", 1, true)
	if ok, err := b.Delete(ctx, "key_a", id(1)); !ok || err != nil {
		t.Fatalf("delete by its owner: %v %v", ok, err)
	}
	want(t, a, "key_a", 1, false)
	if ok, _ := a.Delete(ctx, "key_a", id(1)); ok {
		t.Fatal("a second delete found it")
	}
	want(t, a, "", 2, true)
}

func testSizeCap(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxBytes: size}, clk)
	big := append(conv("big"), ' ')
	if err := a.Put(ctx, "k", id(1), big); !errors.Is(err, pipeline.ErrResponseTooLarge) {
		t.Fatalf("a conversation above the cap: %v", err)
	}
	if _, ok, _ := b.Get(ctx, "k", id(1)); ok {
		t.Fatal("a conversation above the cap was stored")
	}
	put(t, a, clk, "k", 2) // exactly the cap
	want(t, b, "k", 2, true)
}

func testExpiry(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{TTL: time.Hour}, clk)
	put(t, a, clk, "k", 1)
	put(t, a, clk, "k", 2) // a millisecond later
	clk.Advance(time.Hour - time.Second - time.Millisecond)
	want(t, b, "k", 1, true)
	clk.Advance(time.Second)
	want(t, b, "k", 1, false)
	want(t, b, "k", 2, true)
	if ok, err := b.Delete(ctx, "k", id(1)); ok || err != nil {
		t.Fatalf("delete of an expired conversation: %v %v", ok, err)
	}
	clk.Advance(time.Millisecond)
	want(t, a, "k", 2, false)
	// Expired conversations leave room: a full key stores again.
	put(t, a, clk, "k", 3)
	want(t, b, "k", 3, true)
}

func testPerKeyCount(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxPerKey: 3}, clk)
	put(t, a, clk, "other", 100)
	put(t, a, clk, "other", 101)
	for n := 1; n <= 5; n++ {
		put(t, a, clk, "flood", n)
	}
	for n := 1; n <= 5; n++ {
		want(t, b, "flood", n, n > 2) // the key's oldest went
	}
	want(t, b, "other", 100, true) // not another key's
	want(t, b, "other", 101, true)
}

func testPerKeyBytes(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxBytes: size, MaxKeyBytes: 2 * size}, clk)
	put(t, a, clk, "other", 100)
	for n := 1; n <= 4; n++ {
		put(t, a, clk, "flood", n)
	}
	for n := 1; n <= 4; n++ {
		want(t, b, "flood", n, n > 2)
	}
	want(t, b, "other", 100, true)
}

func testTotalCount(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxPerKey: 2, Max: 4}, clk)
	put(t, a, clk, "k1", 1)
	put(t, a, clk, "k2", 2)
	put(t, a, clk, "k3", 3)
	put(t, a, clk, "k3", 4)
	put(t, a, clk, "k4", 5) // the oldest of all goes: k1's
	put(t, b, clk, "k4", 6) // then k2's, whichever replica stores
	want(t, a, "k1", 1, false)
	want(t, a, "k2", 2, false)
	for n := 3; n <= 6; n++ {
		want(t, a, []string{"k3", "k3", "k4", "k4"}[n-3], n, true)
	}
}

func testTotalBytes(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxBytes: size, MaxKeyBytes: 2 * size, MaxTotalBytes: 3 * size}, clk)
	for n := 1; n <= 4; n++ {
		put(t, a, clk, fmt.Sprint("k", n), n)
	}
	want(t, b, "k1", 1, false)
	for n := 2; n <= 4; n++ {
		want(t, b, fmt.Sprint("k", n), n, true)
	}
}

func testReplace(t *testing.T, open opener) {
	clk := newClock()
	a, b := open(t, pipeline.ResponseLimits{MaxPerKey: 2}, clk)
	put(t, a, clk, "k", 1)
	clk.Advance(time.Millisecond)
	if err := a.Put(ctx, "k", id(1), conv("again")); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := b.Get(ctx, "k", id(1)); !ok || string(v) != string(conv("again")) {
		t.Fatalf("replaced conversation: %q %v", v, ok)
	}
	put(t, a, clk, "k", 2) // two conversations: the replaced one counts once
	want(t, b, "k", 2, true)
	if _, ok, _ := b.Get(ctx, "k", id(1)); !ok {
		t.Fatal("a replaced conversation counted twice")
	}
}
