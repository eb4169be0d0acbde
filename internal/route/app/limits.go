package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/limits"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// newLimits builds the key policy, rate limit and budget gate
// (route/limits): counters in Redis when replicas share one, else in
// memory; settled spend persisted to the route store. Without a store
// there are no stored keys, so nothing to enforce: nil.
func newLimits(ctx context.Context, d Deps, st *store.Store, state *routing.State, table *router.Table) (*limits.Gate, error) {
	if st == nil {
		return nil, nil
	}
	var counters limits.Counters
	if d.Redis != nil {
		counters = limits.NewRedis(d.Redis, d.RedisPrefix)
	}
	g := limits.New(limits.Options{Keys: state.Keys(), Pricer: state, Resolver: table, Store: st, Counters: counters,
		Refresh: state.Reload, Clock: d.Clock, Log: d.Log})
	if err := g.Load(ctx); err != nil {
		return nil, err
	}
	return g, nil
}
