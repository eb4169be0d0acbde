package app

import (
	"context"
	"errors"

	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/feature"
)

// gatewayModule builds the gateway transport (route/api): every dialect's
// endpoints under its catch-all, which check gateway keys themselves,
// through the pipeline of the stages the modules before it installed.
// Its Settle waits for the requests in flight when the gateway stops.
func gatewayModule(_ context.Context, w *wiring) (feature.Module, error) {
	cfg, a := w.cfg, w.app
	keys := make([]string, len(cfg.Route.APIKeys))
	for i, k := range cfg.Route.APIKeys {
		keys[i] = k.Reveal()
	}
	// Requests without a key: from anywhere only when the operator said
	// so, else from the gateway host itself.
	if w.state == nil {
		return feature.Module{}, errors.New("route: the gateway module comes after the routing state")
	}
	acfg := api.Config{RequireAPIKey: cfg.Route.RequireAPIKey, AllowAnonymous: cfg.Route.AllowAnonymous, LocalClient: w.guard.FromGatewayHost, APIKeys: keys}
	if w.st != nil {
		acfg.Keys = w.state.Keys()
	}
	acfg.Pipeline = w.pipeline()
	a.API = api.New(a.Router, a, acfg, w.d.Clock, w.d.Log)
	if w.responses != nil {
		a.API.SetResponseStore(w.responses)
	}
	return feature.Module{
		Name:     "gateway",
		Package:  "route/api",
		Routes:   func(mux feature.Mux) { mux.Handle("/", a.API) },
		Settings: feature.Settings{Config: []string{"route.api_keys", "route.require_api_key", "route.allow_anonymous"}},
		Settle:   a.API.Settle,
	}, nil
}
