package presence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// base is millisecond-aligned: Redis keeps millisecond precision.
var base = time.UnixMilli(1_750_000_000_000)

// impl opens two views of one presence store, as two replicas would see it
// (the same instance for Memory).
type impl struct {
	name string
	open func(t *testing.T) (a, b control.PresenceStore)
}

var impls = []impl{
	{"memory", func(*testing.T) (control.PresenceStore, control.PresenceStore) {
		m := NewMemory(clock.NewFake(base), time.Hour)
		return m, m
	}},
	{"redis", func(t *testing.T) (control.PresenceStore, control.PresenceStore) {
		c1, prefix := testenv.Redis(t)
		c2 := redis.NewClient(c1.Options())
		t.Cleanup(func() { c2.Close() })
		return NewRedis(c1, prefix, time.Hour), NewRedis(c2, prefix, time.Hour)
	}},
}

var conformance = []struct {
	name string
	fn   func(t *testing.T, a, b control.PresenceStore)
}{
	{"NewerWins", testNewerWins},
	{"LookupMissing", testLookupMissing},
	{"ConcurrentReplicas", testConcurrentReplicas},
}

func TestConformance(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					a, b := im.open(t)
					tc.fn(t, a, b)
				})
			}
		})
	}
}

func touch(t *testing.T, s control.PresenceStore, id string, at time.Time, consent bool) {
	t.Helper()
	if err := s.Touch(context.Background(), control.Presence{DeviceID: id, At: at, ExitConsent: consent}); err != nil {
		t.Fatalf("Touch(%s, %v): %v", id, at, err)
	}
}

func lookup(t *testing.T, s control.PresenceStore, ids ...string) map[string]control.Presence {
	t.Helper()
	got, err := s.Lookup(context.Background(), ids)
	if err != nil {
		t.Fatalf("Lookup(%v): %v", ids, err)
	}
	if got == nil {
		t.Fatalf("Lookup(%v) = nil map", ids)
	}
	return got
}

func wantPresence(t *testing.T, got map[string]control.Presence, id string, at time.Time, consent bool) {
	t.Helper()
	p, ok := got[id]
	if !ok {
		t.Fatalf("%s missing from %v", id, got)
	}
	if p.DeviceID != id || !p.At.Equal(at) || p.ExitConsent != consent {
		t.Fatalf("%s = %+v, want At %v consent %v", id, p, at, consent)
	}
}

func testNewerWins(t *testing.T, a, b control.PresenceStore) {
	t2 := base.Add(2 * time.Second)
	touch(t, a, "d1", t2, true)
	touch(t, b, "d1", base, false) // older, from the other replica: ignored
	wantPresence(t, lookup(t, a, "d1"), "d1", t2, true)
	wantPresence(t, lookup(t, b, "d1"), "d1", t2, true)

	t3 := t2.Add(time.Millisecond)
	touch(t, b, "d1", t3, false) // newer: wins
	wantPresence(t, lookup(t, a, "d1"), "d1", t3, false)

	touch(t, a, "d1", t3, true) // same instant: the later write wins
	wantPresence(t, lookup(t, b, "d1"), "d1", t3, true)
}

func testLookupMissing(t *testing.T, a, b control.PresenceStore) {
	if got := lookup(t, a); len(got) != 0 {
		t.Fatalf("Lookup() = %v, want empty", got)
	}
	if got := lookup(t, a, "nope", "nada"); len(got) != 0 {
		t.Fatalf("Lookup(unknown) = %v, want empty", got)
	}
	touch(t, a, "d1", base, false)
	touch(t, a, "d2", base.Add(time.Second), true)
	got := lookup(t, b, "x", "d2", "y", "d1", "d1")
	if len(got) != 2 {
		t.Fatalf("Lookup = %v, want d1 and d2 only", got)
	}
	wantPresence(t, got, "d1", base, false)
	wantPresence(t, got, "d2", base.Add(time.Second), true)
}

// testConcurrentReplicas races heartbeats of one device from both replicas
// in random order: the newest must survive.
func testConcurrentReplicas(t *testing.T, a, b control.PresenceStore) {
	const n = 200
	order := rand.Perm(n)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range 8 {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				at := base.Add(time.Duration(order[i]) * time.Millisecond)
				if err := s.Touch(context.Background(), control.Presence{DeviceID: "race", At: at, ExitConsent: order[i]%2 == 1}); err != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		t.Fatal("Touch failed")
	}
	wantPresence(t, lookup(t, a, "race"), "race", base.Add((n-1)*time.Millisecond), (n-1)%2 == 1)
}

// TestMemorySweep checks that devices silent for longer than the retention
// are dropped by the lazy sweep, bounding memory by recent devices.
func TestMemorySweep(t *testing.T) {
	clk := clock.NewFake(base)
	m := NewMemory(clk, time.Minute)
	const devices = 8192
	for i := range devices {
		touch(t, m, "old-"+strconv.Itoa(i), clk.Now(), false)
	}
	if n := m.Len(); n != devices {
		t.Fatalf("Len = %d, want %d", n, devices)
	}
	clk.Advance(time.Minute + time.Second)
	// 64 rounds over 8192 devices: every shard sees far more than the
	// 4096 writes that trigger its sweep.
	for round := range 64 {
		now := clk.Now().Add(time.Duration(round) * time.Millisecond)
		for i := range devices {
			touch(t, m, "new-"+strconv.Itoa(i), now, false)
		}
	}
	if n := m.Len(); n != devices {
		t.Fatalf("Len after sweep = %d, want %d (old devices kept)", n, devices)
	}
	if got := lookup(t, m, "old-0", "old-8191"); len(got) != 0 {
		t.Fatalf("old devices still present: %v", got)
	}
}

func TestRedisTTL(t *testing.T) {
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	r := NewRedis(c, prefix, ttl)
	now := time.Now().Truncate(time.Millisecond)
	touch(t, r, "d1", now, true)

	v, err := c.Get(ctx, prefix+"p:d1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d|1", now.UnixMilli()); v != want {
		t.Fatalf("stored %q, want %q", v, want)
	}
	pttl, err := c.PTTL(ctx, prefix+"p:d1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 || pttl > ttl {
		t.Fatalf("PTTL = %v, want in (0, %v]", pttl, ttl)
	}
	wantPresence(t, lookup(t, r, "d1"), "d1", now, true)

	time.Sleep(ttl + 200*time.Millisecond)
	if got := lookup(t, r, "d1"); len(got) != 0 {
		t.Fatalf("after ttl: %v, want empty", got)
	}
}

// TestRedisTTLRefresh checks that each accepted heartbeat extends the
// expiry.
func TestRedisTTLRefresh(t *testing.T) {
	c, prefix := testenv.Redis(t)
	const ttl = 400 * time.Millisecond
	r := NewRedis(c, prefix, ttl)
	now := time.Now().Truncate(time.Millisecond)
	for i := range 4 {
		touch(t, r, "d1", now.Add(time.Duration(i)*time.Millisecond), false)
		time.Sleep(ttl / 2)
	}
	wantPresence(t, lookup(t, r, "d1"), "d1", now.Add(3*time.Millisecond), false)
}

func TestRedisMalformed(t *testing.T) {
	c, prefix := testenv.Redis(t)
	if err := c.Set(context.Background(), prefix+"p:bad", "garbage", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	r := NewRedis(c, prefix, time.Minute)
	if _, err := r.Lookup(context.Background(), []string{"bad"}); err == nil {
		t.Fatal("Lookup of malformed value: want error")
	}
	// A heartbeat repairs it.
	touch(t, r, "bad", base, false)
	wantPresence(t, lookup(t, r, "bad"), "bad", base, false)
}

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%08d", i)
	}
	return ids
}

func BenchmarkMemoryTouch(b *testing.B) {
	m := NewMemory(clock.Real{}, time.Hour)
	ids := benchIDs(100_000)
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		ctx := context.Background()
		for pb.Next() {
			i++
			_ = m.Touch(ctx, control.Presence{DeviceID: ids[i%len(ids)], At: base.Add(time.Duration(i) * time.Millisecond)})
		}
	})
}

func BenchmarkRedisTouch(b *testing.B) {
	c, prefix := testenv.Redis(b)
	r := NewRedis(c, prefix, time.Minute)
	ids := benchIDs(10_000)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := r.Touch(ctx, control.Presence{DeviceID: ids[i%len(ids)], At: base.Add(time.Duration(i) * time.Millisecond)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(16) // many heartbeat handlers in flight per CPU
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 7919
			for pb.Next() {
				i++
				// Later than every serial heartbeat, so each one is written.
				at := base.Add(time.Hour + time.Duration(i)*time.Millisecond)
				if err := r.Touch(ctx, control.Presence{DeviceID: ids[i%len(ids)], At: at}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkRedisLookup(b *testing.B) {
	c, prefix := testenv.Redis(b)
	r := NewRedis(c, prefix, time.Minute)
	ids := benchIDs(100)
	ctx := context.Background()
	for _, id := range ids {
		if err := r.Touch(ctx, control.Presence{DeviceID: id, At: base}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Lookup(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
}
