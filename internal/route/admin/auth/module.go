package auth

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/store"
)

// Module is the dashboard account as a gateway feature: /api/auth and the
// login settings (login, logout, setup and reading whether login is
// required are public), and, before the gateway serves, the initial
// password or the setup token (Prepare). The settings besides the initial
// password configure the shared guard (route/admin) every management
// route passes: the hosts it answers under, the proxies it trusts and the
// key signing the sessions.
func (a *Account) Module() feature.Module {
	return feature.Module{
		Name:    "auth",
		Package: "route/admin/auth",
		Routes:  func(mux feature.Mux) { a.Register(mux) },
		Settings: feature.Settings{
			Config: []string{"route.initial_password", "route.allowed_hosts", "trust_proxy", "master_key"},
			Stored: []string{store.SettingPasswordHash, store.SettingRequireLogin},
		},
		Init: a.Prepare,
	}
}
