// Package redisx owns the Redis connection shared by the components that
// must agree across replicas (rate limits, presence, login sessions, cache
// invalidation): it parses a redis:// URL, connects and checks the server,
// and follows pub/sub channels across reconnections (Follow).
package redisx

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Open connects to the Redis server named by url (redis:// or rediss://)
// and pings it.
func Open(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisx: parse url: %w", err)
	}
	// The pool is bounded: beyond MaxActiveConns callers wait for a
	// connection instead of opening more, so a flood of requests cannot
	// exhaust Redis's connection limit. Login-session waiters and the
	// revocation follower share one Pub/Sub connection each per replica.
	opt.PoolSize = 64
	opt.MaxActiveConns = 64
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redisx: connect %s: %w", opt.Addr, err)
	}
	return c, nil
}

// Follower says what Follow does with a channel.
type Follower struct {
	// OnSubscribed, when set, runs after every (re)subscription and before
	// the messages that follow it: the place to reload what was missed
	// while the subscription was down.
	OnSubscribed func(ctx context.Context)
	// OnMessage is called with each message's payload, one at a time.
	OnMessage func(payload string)
	// Ready, when set, becomes true once the first subscription is in
	// place.
	Ready *atomic.Bool
}

// Follow subscribes to channel and hands its messages to f until ctx
// ends, then returns nil. The client reconnects and subscribes again on
// its own after a failure (and pings the connection to notice one); each
// new subscription calls OnSubscribed.
func Follow(ctx context.Context, c *redis.Client, channel string, f Follower) error {
	sub := c.Subscribe(ctx, channel)
	defer sub.Close()
	msgs := sub.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind != "subscribe" {
					continue
				}
				if f.OnSubscribed != nil {
					f.OnSubscribed(ctx)
				}
				if f.Ready != nil {
					f.Ready.Store(true)
				}
			case *redis.Message:
				f.OnMessage(m.Payload)
			}
		}
	}
}
