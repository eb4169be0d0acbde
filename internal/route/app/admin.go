package app

import (
	"context"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/admin"
	adminauth "github.com/omniedge/omni/internal/route/admin/auth"
	"github.com/omniedge/omni/internal/route/admin/keys"
	"github.com/omniedge/omni/internal/route/admin/models"
	"github.com/omniedge/omni/internal/route/admin/pricing"
	"github.com/omniedge/omni/internal/route/admin/providers"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// management is the routing state and, with a store, the management API
// over it (route/admin/...).
type management struct {
	state   *routing.State
	guard   *admin.Guard
	account *adminauth.Account // nil without a store
	st      *store.Store
	keys    *keys.Service
	prov    *providers.Service
	models  *models.Service
	pricing *pricing.Service
}

// newManagement builds the routing state (config-declared state plus, with
// st, the stored one) and the management endpoints.
func newManagement(cfg *config.Config, d Deps, st *store.Store, a *App) (*management, error) {
	so := routing.Options{Route: cfg.Route, Table: a.Table, Registry: Registry(), Pricing: a.Router, HTTP: d.HTTP, Clock: d.Clock, Log: d.Log}
	gopt := admin.Options{TrustProxy: cfg.TrustedProxies(), AllowedHosts: cfg.Route.AllowedHosts, Clock: d.Clock}
	if st != nil {
		so.Store = st
		gopt.Store, gopt.MasterKey = st, d.MasterKey
	}
	state, err := routing.New(so)
	if err != nil {
		return nil, err
	}
	guard, err := admin.New(gopt)
	if err != nil {
		return nil, err
	}
	m := &management{state: state, guard: guard, st: st}
	if st == nil {
		return m, nil
	}
	m.account = adminauth.New(adminauth.Options{Store: st, Guard: guard, InitialPassword: cfg.Route.InitialPassword.Reveal(), Clock: d.Clock, Log: d.Log})
	m.keys = keys.New(keys.Options{Store: st, Guard: guard, Keys: state.Keys(), State: state, ConfigKeys: cfg.Route.APIKeys, Clock: d.Clock})
	m.prov = providers.New(providers.Options{Store: st, Guard: guard, State: state, Clock: d.Clock,
		// A provider whose configuration changed starts with a clean
		// record: breakers, cooldowns and lockouts learnt from the old
		// keys or base URL no longer apply (on every replica, with Redis).
		ProviderChanged: func(ctx context.Context, provider string) {
			if a.Resilience != nil {
				a.Resilience.Reset(ctx, resilience.Scope{Breakers: true, Cooldowns: true, Lockouts: true, Provider: provider})
			}
		},
	})
	m.models = models.New(st, guard, state)
	m.pricing = pricing.New(st, guard, state)
	return m, nil
}

// Load stores the initial dashboard password or prints a setup token (on
// first start, with a store), then builds the routing table; a restore
// calls it again (backup.Reloader).
func (m *management) Load(ctx context.Context) error {
	if m.account != nil {
		if err := m.account.Prepare(ctx); err != nil {
			return err
		}
	}
	return m.state.Load(ctx)
}

// Register adds the management routes to mux; without a store there are
// none.
func (m *management) Register(mux admin.Mux) {
	if m.st == nil {
		return
	}
	m.account.Register(mux)
	m.keys.Register(mux)
	m.prov.Register(mux)
	m.models.Register(mux)
	m.pricing.Register(mux)
}
