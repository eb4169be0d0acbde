package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/limits"
	"github.com/omniedge/omni/internal/route/manage"
	"github.com/omniedge/omni/internal/route/router"
)

// newLimits builds the key policy, rate limit and budget gate
// (route/limits): counters in Redis when replicas share one, else in
// memory; settled spend persisted to the route store. Without a store
// there are no stored keys, so nothing to enforce: nil.
func newLimits(ctx context.Context, d Deps, st manage.Store, mgr *manage.Manager, table *router.Table) (*limits.Gate, error) {
	ls, ok := st.(limits.Store)
	if st == nil || !ok {
		return nil, nil
	}
	var counters limits.Counters
	if d.Redis != nil {
		counters = limits.NewRedis(d.Redis, d.RedisPrefix)
	}
	g := limits.New(limits.Options{Keys: mgr.Keys(), Pricer: mgr, Resolver: table, Store: ls, Counters: counters,
		Refresh: mgr.Refresh, Clock: d.Clock, Log: d.Log})
	if err := g.Load(ctx); err != nil {
		return nil, err
	}
	return g, nil
}
