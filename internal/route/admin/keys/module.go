package keys

import "github.com/omniedge/omni/internal/route/feature"

// Module is the gateway key endpoints as a gateway feature: /api/keys and
// the registered-key quotas behind the login, and the registered-key
// routes and /v1/quotas/check, which an issuing gateway key may call.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "keys",
		Package: "route/admin/keys",
		Routes:  func(mux feature.Mux) { s.Register(mux) },
		Settings: feature.Settings{
			Config: []string{"route.api_keys"},
			Stored: []string{SettingRegisteredPerAccount, SettingRegisteredPerIssuer, SettingRegisteredIssueRate},
		},
	}
}
