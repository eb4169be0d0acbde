package models

import "github.com/omniedge/omni/internal/route/feature"

// Module is the model-name endpoints as a gateway feature: aliases,
// combos, model→combo mappings and the catalog, behind the login.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "models",
		Package: "route/admin/models",
		Routes:  func(mux feature.Mux) { s.Register(mux) },
	}
}
