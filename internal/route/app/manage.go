package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/manage"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/store"
)

// manageModule builds the manager (route/manage): the routing table from
// the configuration and the route store, kept in step with other
// replicas by its Run, and the management API, which labels its routes
// itself (login, setup and the login settings are public). It is one
// module with the route store's core tables.
func manageModule(ctx context.Context, w *wiring) (feature.Module, error) {
	cfg, d, a := w.cfg, w.d, w.app
	mgr, err := manage.New(manage.Options{
		Route: cfg.Route, Store: w.st, Table: a.Table, Registry: w.registry, Pricing: a.Router, HTTP: d.HTTP,
		MasterKey: d.MasterKey, InitialPassword: cfg.Route.InitialPassword.Reveal(), TrustProxy: cfg.TrustedProxies(), AllowedHosts: cfg.Route.AllowedHosts,
		Clock: d.Clock, Log: d.Log,
		// A provider whose configuration changed starts with a clean
		// record: breakers, cooldowns and lockouts learnt from the old
		// keys or base URL no longer apply (on every replica, with Redis).
		ProviderChanged: func(ctx context.Context, provider string) {
			if a.Resilience != nil {
				a.Resilience.Reset(ctx, resilience.Scope{Breakers: true, Cooldowns: true, Lockouts: true, Provider: provider})
			}
		},
	})
	if err != nil {
		return feature.Module{}, err
	}
	if err := mgr.Load(ctx); err != nil {
		return feature.Module{}, err
	}
	a.Manager = mgr
	return feature.Module{
		Name:    "manage",
		Package: "route/manage",
		Routes:  func(mux feature.Mux) { mgr.Register(mux) },
		// route_providers, route_credentials, route_api_keys, aliases,
		// combos, mappings, models, pricing, settings, sessions, epoch;
		// pricing limits and key scopes; providers' secret headers.
		Migrations: feature.Migrations{Route: []string{"20261125000000", "20261204010000", "20261204020000"}},
		Settings: feature.Settings{
			Config: []string{"route.providers", "route.aliases", "route.combos", "route.initial_password", "route.allowed_hosts", "trust_proxy", "master_key"},
			Stored: []string{store.SettingPasswordHash, store.SettingRequireLogin, manage.SettingRegisteredPerAccount,
				manage.SettingRegisteredPerIssuer, manage.SettingRegisteredIssueRate},
		},
		Run:      mgr.Run,
		Lifetime: feature.Awaited,
	}, nil
}
