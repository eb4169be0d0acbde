package policies

import "github.com/omniedge/omni/internal/route/feature"

// Module is the routing policies as a gateway feature: an enforcing gate
// (before the key limits, so a refused call reserves nothing), the
// management routes /api/policies, its table (product route_policies)
// and the loop following other replicas' changes.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "policies",
		Package:    "route/policies",
		Admin:      func(a feature.Admin) { s.Register(a.Guarded) },
		Stage:      feature.Stage{Gate: s, Order: feature.Enforce},
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Init:       s.Load,
		Run:        s.Run,
		Lifetime:   feature.Detached,
	}
}
