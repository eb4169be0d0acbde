package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// newResilience builds the provider breakers, connection cooldowns, model
// lockouts and request queue: settings in the route store (when there is
// one), state shared through Redis when d.Redis is set.
func newResilience(ctx context.Context, d Deps, st *store.Store, rt *router.Router) (*resilience.Tracker, error) {
	o := resilience.Options{Clock: d.Clock, Redis: d.Redis, Prefix: d.RedisPrefix, Log: d.Log,
		Connections: func(provider string) int { return len(rt.Connections(provider)) }}
	if st != nil {
		o.Store = st
	}
	return resilience.New(ctx, o)
}
