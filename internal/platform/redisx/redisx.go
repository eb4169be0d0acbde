// Package redisx owns the Redis connection shared by the components that
// must agree across replicas (rate limits, presence, login sessions, cache
// invalidation): it parses a redis:// URL, connects and checks the server.
package redisx

import (
	"context"
	"fmt"

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
