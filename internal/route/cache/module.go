package cache

import "github.com/omniedge/omni/internal/route/feature"

// Module is the response cache and idempotency as a gateway feature: the
// pipeline's cache and idempotency stages, /api/cache/stats, and the
// cache table (the shared tier without Redis).
func (h *Handler) Module() feature.Module {
	return feature.Module{
		Name:       "cache",
		Package:    "route/cache",
		Admin:      func(a feature.Admin) { h.Register(a.Guarded) },
		Stage:      feature.Stage{Cache: h.Cache, Idempotency: h.Idempotency},
		Migrations: feature.Migrations{Route: []string{"20261126020000"}}, // route_cache
		Settings:   feature.Settings{Config: []string{"redis", "redis_prefix"}},
	}
}
