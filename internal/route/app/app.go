// Package app assembles the OmniRoute gateway from configuration: the
// provider registry with every shipped wire format, the routing table of
// declared providers (one connection per API key), aliases and combos, the
// router and the HTTP API.
package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// App is an assembled gateway.
type App struct {
	Table  *router.Table
	Router *router.Router
	API    *api.Server
	models []api.ModelInfo
}

// Registry returns a registry with every provider type this build ships.
func Registry() *provider.Registry {
	reg := provider.NewRegistry()
	reg.Register("anthropic", func(c provider.Config) (router.Adapter, error) {
		base := c.BaseURL
		if base == "" {
			base = anthropic.DefaultBaseURL
		}
		return &anthropic.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
	})
	registerOpenAI(reg)
	registerResponses(reg)
	registerGemini(reg)
	registerOllama(reg)
	return reg
}

// New builds the gateway from cfg.Route. hc is the client for upstream
// calls (nil: a default with generous timeouts for long generations).
func New(cfg *config.Config, hc *http.Client, clk clock.Clock, log *slog.Logger) (*App, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Minute}
	}
	reg := Registry()
	a := &App{Table: router.NewTable()}
	for _, p := range cfg.Route.Providers {
		keys := p.APIKeys
		if len(keys) == 0 {
			keys = []config.Secret{""} // local servers (vLLM, Ollama) need none
		}
		var conns []router.Connection
		for i, k := range keys {
			ad, err := reg.New(provider.Config{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, APIKey: k.Reveal(), Headers: p.Headers, HTTP: hc})
			if err != nil {
				return nil, fmt.Errorf("route provider %s: %w", p.ID, err)
			}
			conns = append(conns, router.Connection{ID: p.ID + "#" + strconv.Itoa(i+1), Adapter: ad})
		}
		a.Table.SetProvider(p.ID, conns)
		for _, m := range p.Models {
			a.models = append(a.models, api.ModelInfo{ID: p.ID + "/" + m, OwnedBy: p.ID, Kind: "chat"})
		}
	}
	for name, to := range cfg.Route.Aliases {
		a.Table.SetAlias(name, to)
		a.models = append(a.models, api.ModelInfo{ID: name, OwnedBy: "alias", Kind: "alias"})
	}
	for _, c := range cfg.Route.Combos {
		combo := router.Combo{Name: c.Name, Strategy: c.Strategy}
		for _, t := range c.Targets {
			target, err := parseTarget(t)
			if err != nil {
				return nil, fmt.Errorf("route combo %s: %w", c.Name, err)
			}
			combo.Targets = append(combo.Targets, target)
		}
		if err := a.Table.SetCombo(combo); err != nil {
			return nil, fmt.Errorf("route combo %s: %w", c.Name, err)
		}
		a.models = append(a.models, api.ModelInfo{ID: c.Name, OwnedBy: "combo", Kind: "combo"})
	}
	a.Router = router.New(a.Table, clk)
	keys := make([]string, len(cfg.Route.APIKeys))
	for i, k := range cfg.Route.APIKeys {
		keys[i] = k.Reveal()
	}
	a.API = api.New(a.Router, a, api.Config{RequireAPIKey: cfg.Route.RequireAPIKey, APIKeys: keys}, clk, log)
	return a, nil
}

// Models implements api.Models.
func (a *App) Models() []api.ModelInfo { return append([]api.ModelInfo(nil), a.models...) }

// parseTarget reads "provider/model" or "provider/model*weight".
func parseTarget(s string) (router.Target, error) {
	weight := 0
	if i := strings.LastIndexByte(s, '*'); i > 0 {
		w, err := strconv.Atoi(s[i+1:])
		if err != nil || w < 1 {
			return router.Target{}, fmt.Errorf("target %q: weight must be a positive integer", s)
		}
		s, weight = s[:i], w
	}
	p, m, ok := router.SplitModel(s)
	if !ok {
		return router.Target{}, fmt.Errorf("target %q is not provider/model", s)
	}
	return router.Target{Provider: p, Model: m, Weight: weight}, nil
}
