package redisx_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/redisx"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// Follow delivers what is published, and after the subscription's
// connection is killed it subscribes again by itself, calling
// OnSubscribed (the hook that reloads what was missed) once more.
func TestFollowResubscribes(t *testing.T) {
	c, prefix := testenv.Redis(t)
	channel := prefix + "follow"
	// The follower's own client, named so that only its connections are
	// killed below (other tests on this server keep theirs).
	fc, name := testenv.NamedRedis(t, prefix, "follower")
	ctx, cancel := context.WithCancel(context.Background())
	var subscribed atomic.Int32
	var ready atomic.Bool
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- redisx.Follow(ctx, fc, channel, redisx.Follower{
			OnSubscribed: func(context.Context) { subscribed.Add(1) },
			OnMessage:    func(p string) { got <- p },
			Ready:        &ready,
		})
	}()
	testenv.Eventually(t, "first subscription", func() bool { return ready.Load() && subscribed.Load() == 1 })
	publishUntil(t, c.Publish, channel, "one", got)

	// Kill the follower's connections: the client reconnects and
	// subscribes again.
	testenv.KillRedisClients(t, c, name)
	testenv.Eventually(t, "second subscription", func() bool { return subscribed.Load() >= 2 })
	publishUntil(t, c.Publish, channel, "two", got)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Follow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}
}

// publishUntil publishes msg until it arrives on got (a message published
// while the subscription is being set up again may be lost, as pub/sub
// promises no more).
func publishUntil[R interface{ Err() error }](t *testing.T, publish func(context.Context, string, any) R, channel, msg string, got <-chan string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if err := publish(context.Background(), channel, msg).Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p == msg {
				return
			}
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%q not delivered within 10 s", msg)
		}
	}
}
