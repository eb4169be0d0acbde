package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/cache"
	"github.com/omniedge/omni/internal/route/feature"
)

// cacheModule builds the response cache and idempotency: their shared
// tier is Redis when Deps.Redis is set, else the route store (when there
// is one), in front of which each keeps an in-memory LRU.
func cacheModule(_ context.Context, w *wiring) (feature.Module, error) {
	d := w.d
	var tier cache.Tier
	if d.Redis != nil {
		tier = cache.NewRedisTier(d.Redis, d.RedisPrefix)
	} else if w.st != nil {
		tier = w.st
	}
	h := &cache.Handler{
		Cache: cache.New(cache.Options{Tier: tier, Clock: d.Clock, Log: d.Log}),
		Idempotency: cache.NewIdempotency(cache.IdempotencyOptions{Redis: d.Redis, Prefix: d.RedisPrefix,
			Clock: d.Clock, Log: d.Log}),
	}
	return h.Module(), nil
}
