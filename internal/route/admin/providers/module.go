package providers

import "github.com/omniedge/omni/internal/route/feature"

// Module is the provider endpoints as a gateway feature: /api/providers
// and /api/provider-models behind the login, and the migration sealing
// providers' secret headers.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "providers",
		Package:    "route/admin/providers",
		Routes:     func(mux feature.Mux) { s.Register(mux) },
		Migrations: feature.Migrations{Route: []string{"20261204020000"}}, // route_providers.secret_headers
	}
}
