package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// start is a realistic instant: Redis uses Unix time, so the fake clock
// must not sit at the zero time.
var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type impl struct {
	name string
	new  func(t testing.TB, clk clock.Clock) Limiter
}

var impls = []impl{
	{"memory", func(_ testing.TB, clk clock.Clock) Limiter { return NewMemory(clk) }},
	{"redis", func(t testing.TB, clk clock.Clock) Limiter {
		c, prefix := testenv.Redis(t)
		return NewRedis(c, prefix, clk)
	}},
}

func allow(t *testing.T, l Limiter, key string, lim Limit) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	if d.Allowed && d.RetryAfter != 0 {
		t.Fatalf("Allow(%q) = %+v: allowed with a RetryAfter", key, d)
	}
	if !d.Allowed && (d.RetryAfter <= 0 || d.Remaining != 0) {
		t.Fatalf("Allow(%q) = %+v: refused needs RetryAfter > 0 and Remaining 0", key, d)
	}
	return d
}

// expect calls Allow once and checks the whole decision.
func expect(t *testing.T, l Limiter, key string, lim Limit, want Decision) {
	t.Helper()
	if d := allow(t, l, key, lim); d != want {
		t.Fatalf("Allow(%q, %+v) = %+v, want %+v", key, lim, d, want)
	}
}

func ok(remaining int) Decision        { return Decision{Allowed: true, Remaining: remaining} }
func refused(d time.Duration) Decision { return Decision{RetryAfter: d} }

// drain calls Allow until the first refusal and returns how many passed.
func drain(t *testing.T, l Limiter, key string, lim Limit) int {
	t.Helper()
	for n := 0; n < 100000; n++ {
		if !allow(t, l, key, lim).Allowed {
			return n
		}
	}
	t.Fatalf("drain(%q): never refused", key)
	return 0
}

var behaviours = []struct {
	name string
	run  func(t *testing.T, l Limiter, clk *clock.Fake)
}{
	{"burst then refusal", func(t *testing.T, l Limiter, clk *clock.Fake) {
		lim := Limit{Rate: 10, Burst: 5}
		for i := 4; i >= 0; i-- {
			expect(t, l, "k", lim, ok(i))
		}
		expect(t, l, "k", lim, refused(100*time.Millisecond))
		expect(t, l, "k", lim, refused(100*time.Millisecond)) // refusals consume nothing
		clk.Advance(40 * time.Millisecond)
		expect(t, l, "k", lim, refused(60*time.Millisecond))
		clk.Advance(60 * time.Millisecond)
		expect(t, l, "k", lim, ok(0))
		expect(t, l, "k", lim, refused(100*time.Millisecond))
	}},
	{"refill", func(t *testing.T, l Limiter, clk *clock.Fake) {
		lim := Limit{Rate: 10, Burst: 5}
		if n := drain(t, l, "k", lim); n != 5 {
			t.Fatalf("first burst = %d, want 5", n)
		}
		clk.Advance(250 * time.Millisecond) // 2.5 tokens
		expect(t, l, "k", lim, ok(1))       // 1.5 left
		expect(t, l, "k", lim, ok(0))
		expect(t, l, "k", lim, refused(50*time.Millisecond))
		clk.Advance(time.Hour) // refill caps at Burst
		expect(t, l, "k", lim, ok(4))
		if n := drain(t, l, "k", lim); n != 4 {
			t.Fatalf("after long idle: %d more, want 4", n)
		}
		// Steady state: exactly one per 1/Rate.
		for range 10 {
			clk.Advance(100 * time.Millisecond)
			expect(t, l, "k", lim, ok(0))
			expect(t, l, "k", lim, refused(100*time.Millisecond))
		}
	}},
	{"independent keys", func(t *testing.T, l Limiter, _ *clock.Fake) {
		lim := Limit{Rate: 1, Burst: 3}
		if n := drain(t, l, "a", lim); n != 3 {
			t.Fatalf("a: %d, want 3", n)
		}
		expect(t, l, "b", lim, ok(2))
		if n := drain(t, l, "b", lim); n != 2 {
			t.Fatalf("b: %d more, want 2", n)
		}
		expect(t, l, "a", lim, refused(time.Second))
	}},
	{"unlimited", func(t *testing.T, l Limiter, _ *clock.Fake) {
		for _, lim := range []Limit{{Rate: 0}, {Rate: -1, Burst: 1}, {Rate: math.NaN()}, {Rate: math.Inf(1)}} {
			for range 1000 {
				expect(t, l, "k", lim, ok(math.MaxInt))
			}
		}
	}},
	{"fractional rate", func(t *testing.T, l Limiter, clk *clock.Fake) {
		lim := Limit{Rate: 0.5} // burst defaults to max(1, ceil(0.5)) = 1
		expect(t, l, "k", lim, ok(0))
		expect(t, l, "k", lim, refused(2*time.Second))
		clk.Advance(1999 * time.Millisecond)
		expect(t, l, "k", lim, refused(time.Millisecond))
		clk.Advance(time.Millisecond)
		expect(t, l, "k", lim, ok(0))
		expect(t, l, "k", lim, refused(2*time.Second))

		lim = Limit{Rate: 2.5} // burst defaults to 3, one per 400ms
		if n := drain(t, l, "f", lim); n != 3 {
			t.Fatalf("rate 2.5 burst = %d, want 3", n)
		}
		expect(t, l, "f", lim, refused(400*time.Millisecond))
	}},
	{"default burst", func(t *testing.T, l Limiter, _ *clock.Fake) {
		if n := drain(t, l, "k", Limit{Rate: 10}); n != 10 {
			t.Fatalf("burst = %d, want ceil(Rate) = 10", n)
		}
		if n := drain(t, l, "k2", Limit{Rate: 10, Burst: -3}); n != 10 {
			t.Fatalf("burst = %d, want ceil(Rate) = 10", n)
		}
	}},
	{"slow rate with large burst", func(t *testing.T, l Limiter, clk *clock.Fake) {
		lim := Limit{Rate: 1.0 / 3600, Burst: 2} // two at once, then one per hour
		expect(t, l, "k", lim, ok(1))
		expect(t, l, "k", lim, ok(0))
		expect(t, l, "k", lim, refused(time.Hour))
		clk.Advance(59 * time.Minute)
		expect(t, l, "k", lim, refused(time.Minute))
	}},
	{"concurrent one key", func(t *testing.T, l Limiter, _ *clock.Fake) {
		const goroutines, perG, burst = 16, 200, 50
		lim := Limit{Rate: 1, Burst: burst}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() {
				for range perG {
					d, err := l.Allow(context.Background(), "hot", lim)
					if err != nil {
						errs <- err
						return
					}
					if d.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := allowed.Load(); n != burst {
			t.Fatalf("allowed %d of %d, want exactly %d", n, goroutines*perG, burst)
		}
	}},
}

func TestLimiters(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) {
					clk := clock.NewFake(start)
					b.run(t, im.new(t, clk), clk)
				})
			}
		})
	}
}

func TestMemoryBounded(t *testing.T) {
	clk := clock.NewFake(start)
	m := NewMemory(clk)
	ctx := context.Background()
	lim := Limit{Rate: 1, Burst: 1}
	const n = 100_000
	insert := func(batch string) {
		for i := range n {
			d, err := m.Allow(ctx, fmt.Sprintf("%s-%d", batch, i), lim)
			if err != nil || !d.Allowed {
				t.Fatalf("Allow = %+v, %v", d, err)
			}
		}
	}
	insert("a")
	if got := m.len(); got != n {
		t.Fatalf("after first batch len = %d, want %d (all live)", got, n)
	}
	clk.Advance(2 * time.Second) // every "a" entry is now idle
	insert("b")
	t.Logf("entries after 2×%d keys with the first batch idle: %d", n, m.len())
	if got := m.len(); got >= n+n/2 {
		t.Fatalf("after second batch len = %d, want < %d (idle entries swept)", got, n+n/2)
	}
	// Swept keys behave as fresh ones.
	if d, _ := m.Allow(ctx, "a-1", lim); !d.Allowed {
		t.Fatalf("idle key refused: %+v", d)
	}
}

func TestShardSweepRebuild(t *testing.T) {
	s := &shard{m: make(map[string]int64)}
	for i := range 2 * rebuildMin {
		s.m[fmt.Sprint("idle", i)] = 5 // TAT at or before now: idle
	}
	for i := range 100 {
		s.m[fmt.Sprint("live", i)] = 11
	}
	s.sweep(10)
	if len(s.m) != 100 || s.next != sweepMin {
		t.Fatalf("after sweep len = %d, next = %d; want 100, %d", len(s.m), s.next, sweepMin)
	}
	for i := range 100 {
		if s.m[fmt.Sprint("live", i)] != 11 {
			t.Fatalf("live entry %d lost", i)
		}
	}
}

func TestMemoryZeroFakeClock(t *testing.T) {
	clk := &clock.Fake{} // zero time.Time, far from the Unix epoch
	m := NewMemory(clk)
	lim := Limit{Rate: 1, Burst: 2}
	expect(t, m, "k", lim, ok(1))
	expect(t, m, "k", lim, ok(0))
	expect(t, m, "k", lim, refused(time.Second))
}

func TestMemoryRealClock(t *testing.T) {
	m := NewMemory(clock.Real{})
	if n := drain(t, m, "k", Limit{Rate: 0.001, Burst: 7}); n != 7 {
		t.Fatalf("burst = %d, want 7", n)
	}
}

// Two limiters on the same server and prefix act as two replicas sharing
// one limit; the key expires when it becomes idle.
func TestRedisSharedAndExpiring(t *testing.T) {
	c, prefix := testenv.Redis(t)
	clk := clock.NewFake(start)
	a, b := NewRedis(c, prefix, clk), NewRedis(c, prefix, clk)
	lim := Limit{Rate: 2, Burst: 4}
	expect(t, a, "k", lim, ok(3))
	expect(t, b, "k", lim, ok(2))
	expect(t, a, "k", lim, ok(1))
	expect(t, b, "k", lim, ok(0))
	expect(t, a, "k", lim, refused(500*time.Millisecond))

	ctx := context.Background()
	ttl, err := c.PTTL(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("PTTL = %v, want in (0, 2s]", ttl)
	}
	want := fmt.Sprint(start.Add(2 * time.Second).UnixMicro())
	if v, err := c.Get(ctx, prefix+"k").Result(); err != nil || v != want {
		t.Fatalf("stored TAT = %q, %v; want %q", v, err, want)
	}
	// A different prefix is a different limit.
	expect(t, NewRedis(c, prefix+"other:", clk), "k", lim, ok(3))
}

func TestRedisError(t *testing.T) {
	c, prefix := testenv.Redis(t)
	r := NewRedis(c, prefix, clock.NewFake(start))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Allow(ctx, "k", Limit{Rate: 1}); err == nil {
		t.Fatal("Allow with a cancelled context: want error")
	}
}

func TestCells(t *testing.T) {
	for _, tc := range []struct {
		lim       Limit
		t, window int64
	}{
		{Limit{Rate: 10, Burst: 5}, 100_000_000, 500_000_000},
		{Limit{Rate: 3}, 333_333_333, 999_999_999},
		{Limit{Rate: 1e12}, 1, math.MaxInt32}, // faster than 1/ns: clamped
		{Limit{Rate: 1e-30, Burst: math.MaxInt}, memMaxT, memMaxWindow},
	} {
		tt, w, ok := tc.lim.cells(time.Nanosecond, memMaxT, memMaxWindow)
		if !ok || tt != tc.t || w != tc.window {
			t.Errorf("%+v.cells = %d, %d, %v; want %d, %d", tc.lim, tt, w, ok, tc.t, tc.window)
		}
	}
}

func BenchmarkMemoryAllowParallel(b *testing.B) {
	m := NewMemory(clock.Real{})
	const nkeys = 100_000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}
	lim := Limit{Rate: 1000, Burst: 1000}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(7919)) // spread goroutines over the keys
		ctx := context.Background()
		for pb.Next() {
			if _, err := m.Allow(ctx, keys[i%nkeys], lim); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkMemoryAllowParallelOneKey(b *testing.B) {
	m := NewMemory(clock.Real{})
	lim := Limit{Rate: 1000, Burst: 1000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			_, _ = m.Allow(ctx, "hot", lim)
		}
	})
}

func BenchmarkRedisAllow(b *testing.B) {
	c, prefix := testenv.Redis(b)
	r := NewRedis(c, prefix, clock.Real{})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}
	lim := Limit{Rate: 1000, Burst: 1000}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := r.Allow(ctx, keys[i%len(keys)], lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisAllowParallel(b *testing.B) {
	c, prefix := testenv.Redis(b)
	r := NewRedis(c, prefix, clock.Real{})
	lim := Limit{Rate: 1000, Burst: 1000}
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		key := fmt.Sprintf("user:%d", seq.Add(1))
		for pb.Next() {
			if _, err := r.Allow(ctx, key, lim); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
