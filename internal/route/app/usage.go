package app

import (
	"context"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// newUsage builds the usage recorder (route/usage) over the route store;
// nil without one.
func newUsage(cfg *config.Config, d Deps, s *store.Store, state *routing.State, table *router.Table, tr *resilience.Tracker) *usage.Recorder {
	if s == nil {
		return nil
	}
	kinds := map[string]bool{}
	for _, t := range Registry().Types() {
		kinds[t] = true
	}
	for _, n := range provider.CompatibleNames() {
		kinds[n] = true
	}
	return usage.New(usage.Options{
		Store: s, Pricer: state, Registerer: d.Metrics, CatalogCount: len(kinds),
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
