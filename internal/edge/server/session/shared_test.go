package session

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// TestRedisWaitersShareSubscription: an anonymous flood of waiting sockets
// must not cost one Redis connection and one channel each. Every waiter of
// a replica shares one subscription.
func TestRedisWaitersShareSubscription(t *testing.T) {
	c, prefix := testenv.Redis(t)
	s := NewRedis(c, prefix, clock.Real{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const waiters = 20
	done := make(chan error, waiters)
	for i := range waiters {
		id := "w" + strconv.Itoa(i)
		if err := createSession(ctx, s, id, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := s.Wait(ctx, id)
			done <- err
		}()
	}
	// Wait until every waiter is registered with the replica's hub.
	deadline := time.Now().Add(5 * time.Second)
	for s.hub.subscribed() < waiters && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	chans, err := c.PubSubChannels(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 1 {
		t.Fatalf("%d waiters hold %d Redis channels (%v), want 1 shared subscription", waiters, len(chans), chans)
	}
	n, err := c.PubSubNumSub(ctx, chans[0]).Result()
	if err != nil || n[chans[0]] != 1 {
		t.Fatalf("subscribers of %s = %v, %v; want 1", chans[0], n, err)
	}
	// Completion still reaches the right waiter at once.
	if err := s.Complete(ctx, "w3", tokens); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("woken waiter: %v", err)
		}
	case <-time.After(pollEvery / 2):
		t.Fatal("completion did not wake its waiter through the shared subscription")
	}
	cancel()
	for range waiters - 1 {
		<-done
	}
}

// BenchmarkMemoryCreate creates sessions while many are pending: the cost
// of one Create must not grow with the number pending.
func BenchmarkMemoryCreate(b *testing.B) {
	for _, pending := range []int{1000, 100000} {
		b.Run("pending="+strconv.Itoa(pending), func(b *testing.B) {
			clk := clock.NewFake(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
			m := NewMemoryLimited(clk, Limits{}) // no caps: measure Create alone
			ctx := context.Background()
			exp := clk.Now().Add(time.Hour)
			for i := range pending {
				if err := createSession(ctx, m, "p"+strconv.Itoa(i), exp); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := "n" + strconv.Itoa(i)
				if err := createSession(ctx, m, id, exp); err != nil {
					b.Fatal(err)
				}
				if err := m.Complete(ctx, id, tokens); err != nil {
					b.Fatal(err)
				}
				if _, err := m.Wait(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
