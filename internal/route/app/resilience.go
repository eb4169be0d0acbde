package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/resilience"
)

// resilienceModule builds the provider breakers, connection cooldowns,
// model lockouts and request queue: settings in the route store (when
// there is one), state shared through Redis when Deps.Redis is set. The
// router consults it before every attempt.
func resilienceModule(ctx context.Context, w *wiring) (feature.Module, error) {
	d, rt := w.d, w.app.Router
	o := resilience.Options{Clock: d.Clock, Redis: d.Redis, Prefix: d.RedisPrefix, Log: d.Log,
		Connections: func(provider string) int { return len(rt.Connections(provider)) }, Events: w.publisher()}
	if w.st != nil {
		o.Store = w.st
	}
	t, err := resilience.New(ctx, o)
	if err != nil {
		return feature.Module{}, err
	}
	w.app.Resilience = t
	return t.Module(), nil
}
