package pricing

import "github.com/omniedge/omni/internal/route/feature"

// Module is the pricing endpoints as a gateway feature: /api/pricing,
// behind the login.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "pricing",
		Package: "route/admin/pricing",
		Routes:  func(mux feature.Mux) { s.Register(mux) },
		// route_pricing.unit, unit_price: prices in a modality's own unit
		Migrations: feature.Migrations{Route: []string{"20261215030100"}},
	}
}
