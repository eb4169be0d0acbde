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
	opt.PoolSize = 64
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redisx: connect %s: %w", opt.Addr, err)
	}
	return c, nil
}
