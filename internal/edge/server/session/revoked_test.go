package session

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// revEnv is one revocation set as seen from two replicas (the same
// instance for the in-process set) and a way to open a third later.
type revEnv struct {
	a, b  control.RevocationSet
	late  func() control.RevocationSet
	clock *clock.Fake
}

var revImpls = []struct {
	name string
	open func(t *testing.T) *revEnv
}{
	{"memory", func(*testing.T) *revEnv {
		clk := clock.NewFake(time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC))
		m := control.NewLocalRevocations()
		return &revEnv{a: m, b: m, late: func() control.RevocationSet { return m }, clock: clk}
	}},
	{"redis", func(t *testing.T) *revEnv {
		c1, prefix := testenv.Redis(t)
		clk := clock.NewFake(time.Now())
		start := func() *RedisRevocations {
			c := redis.NewClient(c1.Options()) // each replica its own pool
			t.Cleanup(func() { c.Close() })
			r := NewRedisRevocations(c, prefix, clk)
			if err := r.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = r.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			return r
		}
		a, b := start(), start()
		// Both replicas follow the channel before the test revokes.
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := a.subscribers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d replicas subscribed", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return &revEnv{a: a, b: b, late: func() control.RevocationSet { return start() }, clock: clk}
	}},
}

// TestRevocationConformance: a revocation on one replica is seen by every
// replica at once (within a generous 2 s for Pub/Sub), by a replica that
// starts later, and ends after its time.
func TestRevocationConformance(t *testing.T) {
	for _, im := range revImpls {
		t.Run(im.name, func(t *testing.T) {
			e := im.open(t)
			ctx := context.Background()
			now := e.clock.Now()
			until := now.Add(15 * time.Minute)
			if e.a.Revoked("fam_x", now) || e.b.Revoked("fam_x", now) {
				t.Fatal("revoked before Revoke")
			}
			if err := e.a.Revoke(ctx, "fam_x", until); err != nil {
				t.Fatal(err)
			}
			if !e.a.Revoked("fam_x", now) {
				t.Fatal("the revoking replica does not see its own revocation")
			}
			deadline := time.Now().Add(2 * time.Second)
			for !e.b.Revoked("fam_x", now) {
				if time.Now().After(deadline) {
					t.Fatal("the other replica did not see the revocation within 2s")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if e.b.Revoked("fam_y", now) {
				t.Fatal("an unrelated family is revoked")
			}
			if !e.late().Revoked("fam_x", now) {
				t.Fatal("a replica started after the revocation does not see it")
			}
			if e.a.Revoked("fam_x", until) || e.b.Revoked("fam_x", until.Add(time.Second)) {
				t.Fatal("still revoked after its time")
			}
			// A later, longer revocation of the same family wins.
			if err := e.b.Revoke(ctx, "fam_x", until.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := e.a.Revoke(ctx, "fam_x", until); err != nil {
				t.Fatal(err)
			}
			for _, r := range []control.RevocationSet{e.a, e.b} {
				deadline := time.Now().Add(2 * time.Second)
				for !r.Revoked("fam_x", until.Add(time.Minute)) {
					if time.Now().After(deadline) {
						t.Fatal("a shorter revocation cut a longer one short")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}

// TestRedisRevocationsExpire: the shared set holds nothing past the
// access-token lifetime.
func TestRedisRevocationsExpire(t *testing.T) {
	c, prefix := testenv.Redis(t)
	r := NewRedisRevocations(c, prefix, clock.Real{})
	ctx := context.Background()
	if err := r.Revoke(ctx, "fam_a", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	pttl, err := c.PTTL(ctx, prefix+"rv").Result()
	if err != nil || pttl <= 0 || pttl > time.Minute {
		t.Fatalf("PTTL = %v, %v; want in (0, 1m]", pttl, err)
	}
}

// BenchmarkRevoked is the cost every authenticated request pays.
func BenchmarkRevoked(b *testing.B) {
	m := control.NewLocalRevocations()
	now := time.Now()
	for i := range 1000 {
		_ = m.Revoke(context.Background(), "fam_"+string(rune('a'+i%26))+time.Duration(i).String(), now.Add(time.Hour))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m.Revoked("fam_live", now) {
			b.Fatal("revoked")
		}
	}
}
