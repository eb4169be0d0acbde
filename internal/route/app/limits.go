package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/limits"
)

// limitsModule builds the key policy, rate limit and budget gate
// (route/limits): counters in Redis when replicas share one, else in
// memory; settled spend persisted to the route store. Without a store
// there are no stored keys, so nothing to enforce: no module.
func limitsModule(_ context.Context, w *wiring) (feature.Module, error) {
	ls, ok := w.st.(limits.Store)
	if w.st == nil || !ok {
		return feature.Module{}, nil
	}
	var counters limits.Counters
	if w.d.Redis != nil {
		counters = limits.NewRedis(w.d.Redis, w.d.RedisPrefix)
	}
	mgr := w.app.Manager
	g := limits.New(limits.Options{Keys: mgr.Keys(), Pricer: mgr, Resolver: w.app.Table, Store: ls, Counters: counters,
		Refresh: mgr.Refresh, Clock: w.d.Clock, Log: w.d.Log})
	return g.Module(), nil
}
