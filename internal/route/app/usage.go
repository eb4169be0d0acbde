package app

import (
	"context"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// usageModule builds the usage recorder (route/usage) over the route
// store; without one: no module.
func usageModule(_ context.Context, w *wiring) (feature.Module, error) {
	s := w.st
	if s == nil {
		return feature.Module{}, nil
	}
	cfg, d, table, tr := w.cfg, w.d, w.app.Table, w.app.Resilience
	kinds := map[string]bool{}
	for _, t := range w.registry.Types() {
		kinds[t] = true
	}
	for _, n := range provider.CompatibleNames() {
		kinds[n] = true
	}
	r := usage.New(usage.Options{
		Store: s, Pricer: w.state, Registerer: d.Metrics, CatalogCount: len(kinds),
		Providers: func(ctx context.Context) ([]usage.ProviderStatus, error) {
			return configuredProviders(ctx, cfg, s, table)
		},
		Breakers: func() []usage.Breaker {
			if tr == nil {
				return nil
			}
			var out []usage.Breaker
			for _, b := range tr.Breakers() {
				out = append(out, usage.Breaker{Provider: b.Provider, State: b.State, ConsecutiveFailures: b.ConsecutiveFailures,
					OpenUntil: b.OpenUntil, LastStatus: b.LastStatus})
			}
			return out
		},
		Clock: d.Clock, Log: d.Log,
	})
	return r.Module(), nil
}

// configuredProviders lists config-declared and stored providers; active
// ones have at least one connection in the routing table (disabled
// providers have none).
func configuredProviders(ctx context.Context, cfg *config.Config, s *store.Store, table *router.Table) ([]usage.ProviderStatus, error) {
	stored, err := s.Providers(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []usage.ProviderStatus
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			out = append(out, usage.ProviderStatus{ID: id, Active: len(table.Connections(id)) > 0})
		}
	}
	for _, p := range cfg.Route.Providers {
		add(p.ID)
	}
	for _, p := range stored {
		add(p.ID)
	}
	return out, nil
}
