package app

import (
	"context"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/admin/audit"
	adminauth "github.com/omniedge/omni/internal/route/admin/auth"
	"github.com/omniedge/omni/internal/route/admin/keys"
	"github.com/omniedge/omni/internal/route/admin/models"
	"github.com/omniedge/omni/internal/route/admin/pricing"
	"github.com/omniedge/omni/internal/route/admin/providers"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// newGuard builds the guard every management route passes (route/admin):
// the browser checks and, with st, the dashboard login, the management
// keys and the audit log, which it records every change in (returned,
// for its module). Without a store there is no management API, but
// FromGatewayHost still serves the gateway's check of requests without a
// key.
func newGuard(cfg *config.Config, d Deps, st *store.Store) (*admin.Guard, *audit.Log, error) {
	o := admin.Options{TrustProxy: cfg.TrustedProxies(), AllowedHosts: cfg.Route.AllowedHosts, Clock: d.Clock, Log: d.Log}
	var log *audit.Log
	if st != nil {
		log = audit.New(audit.Options{DB: d.DB, MaxAge: cfg.Route.AuditMaxAge, MaxRows: cfg.Route.AuditMaxRows, Clock: d.Clock, Log: d.Log})
		o.Store, o.MasterKey, o.ConfigKeys, o.Audit = st, d.MasterKey, cfg.Route.APIKeys, log
	}
	g, err := admin.New(o)
	return g, log, err
}

// auditModule is the compliance audit log (route/admin/audit) the guard
// records in. Without a store: no module.
func auditModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.audit == nil {
		return feature.Module{}, nil
	}
	return w.audit.Module(w.guard), nil
}

// authModule builds the dashboard account (route/admin/auth): login,
// setup and password; its Init stores the initial password or prints a
// setup token. Without a store: no module.
func authModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	w.account = adminauth.New(adminauth.Options{Store: w.st, Guard: w.guard, InitialPassword: w.cfg.Route.InitialPassword.Reveal(),
		Clock: w.d.Clock, Log: w.d.Log})
	return w.account.Module(), nil
}

// routingModule builds the live routing state (route/routing): the
// routing table from the configuration and, with a store, the stored
// state, which its Init loads and its Run keeps in step with other
// replicas.
func routingModule(_ context.Context, w *wiring) (feature.Module, error) {
	cfg, d, a := w.cfg, w.d, w.app
	o := routing.Options{Route: cfg.Route, Table: a.Table, Registry: w.registry, Pricing: a.Router, HTTP: d.HTTP, Clock: d.Clock, Log: d.Log}
	if w.st != nil {
		o.Store = w.st
	}
	if w.proxies != nil {
		o.Proxies = w.proxies
	}
	state, err := routing.New(o)
	if err != nil {
		return feature.Module{}, err
	}
	w.state, a.State = state, state
	return state.Module(), nil
}

// keysModule builds the gateway key endpoints (route/admin/keys). Without
// a store: no module.
func keysModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	return keys.New(keys.Options{Store: w.st, Guard: w.guard, Keys: w.state.Keys(), State: w.state,
		ConfigKeys: w.cfg.Route.APIKeys, Clock: w.d.Clock, Events: w.publisher()}).Module(), nil
}

// providersModule builds the provider endpoints (route/admin/providers).
// Without a store: no module.
func providersModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	a := w.app
	return providers.New(providers.Options{Store: w.st, Guard: w.guard, State: w.state, Clock: w.d.Clock,
		// A provider whose configuration changed starts with a clean
		// record: breakers, cooldowns and lockouts learnt from the old
		// keys or base URL no longer apply (on every replica, with Redis).
		// The tracker is built after this module, so it is looked up
		// when a provider changes.
		ProviderChanged: func(ctx context.Context, provider string) {
			if a.Resilience != nil {
				a.Resilience.Reset(ctx, resilience.Scope{Breakers: true, Cooldowns: true, Lockouts: true, Provider: provider})
			}
		},
	}).Module(), nil
}

// modelsModule builds the alias, combo, mapping and catalog endpoints
// (route/admin/models). Without a store: no module.
func modelsModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	var services []models.KnownService
	for _, id := range provider.CompatibleNames() {
		services = append(services, models.KnownService{ID: id, Type: "openai-compatible", BaseURL: provider.Compatible[id]})
	}
	return models.New(w.st, w.guard, w.state).WithCatalog(w.registry.Types(), services).Module(), nil
}

// pricingModule builds the pricing endpoints (route/admin/pricing).
// Without a store: no module.
func pricingModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	return pricing.New(w.st, w.guard, w.state).Module(), nil
}

// reloader is what a restore reloads (backup.Reloader), in the order the
// modules' Init first did it: the dashboard login's first-start state
// (a restored database may hold no password), then the routing state.
type reloader struct {
	account *adminauth.Account
	state   *routing.State
}

func (r reloader) Load(ctx context.Context) error {
	if r.account != nil {
		if err := r.account.Prepare(ctx); err != nil {
			return err
		}
	}
	return r.state.Load(ctx)
}
