package app

import (
	"github.com/omniedge/omni/internal/route/cache"
	"github.com/omniedge/omni/internal/route/store"
)

// newCache builds the response cache and idempotency: their shared tier is
// Redis when d.Redis is set, else the route store (when there is one).
func newCache(d Deps, st *store.Store) *cache.Handler {
	var tier cache.Tier
	if d.Redis != nil {
		tier = cache.NewRedisTier(d.Redis, d.RedisPrefix)
	} else if st != nil {
		tier = st
	}
	return &cache.Handler{
		Cache: cache.New(cache.Options{Tier: tier, Clock: d.Clock, Log: d.Log}),
		Idempotency: cache.NewIdempotency(cache.IdempotencyOptions{Redis: d.Redis, Prefix: d.RedisPrefix,
			Clock: d.Clock, Log: d.Log}),
	}
}
