package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/settings"
)

// settingsModule builds the general settings, the IP filter (which
// screens every request on the listener), /api/init, /api/system-info
// and the restart and shutdown endpoints over Deps.Restart and
// Deps.Shutdown (route/settings). Without a store: no module.
func settingsModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	d, st, cfg := w.d, w.st, w.cfg
	return settings.New(settings.Options{Store: st, Guard: w.guard, Version: d.Version, Products: d.Products,
		Dialect: string(d.DB.Dialect), Redis: d.Redis != nil, Shutdown: d.Shutdown, Restart: d.Restart,
		Clock: d.Clock, Log: d.Log,
		Counts: func(ctx context.Context) (settings.Counts, error) {
			keys, err := st.APIKeys(ctx)
			if err != nil {
				return settings.Counts{}, err
			}
			return settings.Counts{Providers: len(w.state.Snapshot().Providers), Keys: len(keys) + len(cfg.Route.APIKeys)}, nil
		},
	}).Module(), nil
}
