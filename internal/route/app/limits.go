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
	if w.st == nil {
		return feature.Module{}, nil
	}
	var counters limits.Counters
	if w.d.Redis != nil {
		counters = limits.NewRedis(w.d.Redis, w.d.RedisPrefix)
	}
	state := w.state
	g := limits.New(limits.Options{Keys: state.Keys(), Pricer: state, Resolver: w.app.Table, Store: w.st, Counters: counters,
		Refresh: state.Reload, Clock: w.d.Clock, Log: w.d.Log})
	w.limits = g
	return g.Module(), nil
}
