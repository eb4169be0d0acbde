package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/admin/audit"
	adminauth "github.com/omniedge/omni/internal/route/admin/auth"
	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/audio"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/files"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/images"
	"github.com/omniedge/omni/internal/route/limits"
	"github.com/omniedge/omni/internal/route/media"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/proxies"
	"github.com/omniedge/omni/internal/route/rerank"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/search"
	"github.com/omniedge/omni/internal/route/store"
)

// modules is the gateway, one feature module each (route/feature), in
// the order they are built: a module may use what one above it built,
// and their Init run in this order. The provider formats need nothing
// and come first (each format package declares its module); the account
// comes before the routing state so that, as a restore does, the first
// start's password is in place before the state loads; the management
// resources serve the routing state; the gateway comes last and runs the
// stages the modules above it installed, the gates in their declared
// order (usage records, then limits enforce). The modalities beyond chat
// (rerank, moderation …) follow the gateway, whose operations
// (feature.Operations) they serve their endpoints over. A new feature is
// a module added here.
func modules() []part {
	return []part{
		static(anthropic.Module()), // provider type anthropic (formats/anthropic)
		static(openai.Module()),    // openai, openai-compatible (formats/openai)
		static(responses.Module()), // openai-responses (formats/responses)
		static(gemini.Module()),    // gemini (formats/gemini)
		static(ollama.Module()),    // ollama (formats/ollama)
		static(rerank.Upstreams()), // cohere, voyage, jina: rerank upstreams (route/rerank)
		static(media.Upstreams()),  // runway, replicate: video and music upstreams (route/media)
		static(search.Upstreams()), // searxng, tavily, brave, exa, serper: web search upstreams (route/search)
		static(images.Upstreams()), // sdwebui: the SD WebUI image upstream (route/images)
		static(audio.Upstreams()),  // deepgram, assemblyai: transcription upstreams (route/audio)
		built(authModule),          // the dashboard login, setup, password (route/admin/auth)
		built(proxiesModule),       // outbound proxies: registry, assignments, health (route/proxies)
		built(webhooksModule),      // outbound webhooks, the events the modules below emit (route/webhooks)
		built(routingModule),       // the live routing state (route/routing)
		built(keysModule),          // gateway keys, registered keys (route/admin/keys)
		built(providersModule),     // providers, their credentials and models (route/admin/providers)
		built(modelsModule),        // aliases, combos, mappings, catalog (route/admin/models)
		built(pricingModule),       // the price table (route/admin/pricing)
		built(settingsModule),      // general settings, IP filter, init, system info, restart (route/settings)
		built(auditModule),         // the compliance audit log (route/admin/audit)
		built(backupModule),        // backups, export, import (route/backup)
		built(resilienceModule),    // breakers, cooldowns, lockouts, queue (route/resilience)
		built(cacheModule),         // response cache, idempotency (route/cache)
		built(policiesModule),      // routing policies: targets calls may reach (route/policies)
		built(limitsModule),        // key policies, rate limits, budgets (route/limits)
		built(usageModule),         // usage records, telemetry (route/usage)
		built(conversationsModule), // stored Responses conversations (route/conversations)
		built(dashboardModule),     // the web dashboard under /dashboard/ (route/dashboard)
		built(promptingModule),     // global system prompt, thinking budget (route/prompting)
		built(gatewayModule),       // the dialect endpoints (route/api)
		built(rerankModule),        // POST /v1/rerank over the gateway's operations (route/rerank)
		built(moderationModule),    // POST /v1/moderations (route/moderation)
		built(filesModule),         // /v1/files: uploads scoped to the key (route/files)
		built(mediaModule),         // video and music generation jobs (route/media)
		built(searchModule),        // GET, POST /v1/search, GET /v1/search/analytics (route/search)
		built(imagesModule),        // /v1/images/generations and /edits (route/images)
		built(audioModule),         // POST /v1/audio/transcriptions, /v1/audio/speech (route/audio)
		built(batchesModule),       // /v1/batches, run through the gateway as the key (route/batches)
		built(a2aModule),           // POST /a2a, the agent card, /api/a2a (route/a2a)
		built(mcpModule),           // the MCP server: tools, transports, audit under /api/mcp (route/mcp)
	}
}

// A part is one entry of the module list: a module that needs nothing
// built, or a function building one from what the parts before it built.
// A built module that is not served in the configuration (no database)
// is the zero Module.
type part struct {
	module feature.Module
	build  func(ctx context.Context, w *wiring) (feature.Module, error)
}

func static(m feature.Module) part { return part{module: m} }

func built(b func(ctx context.Context, w *wiring) (feature.Module, error)) part {
	return part{build: b}
}

// wiring is what the parts built so far hand to the next ones.
type wiring struct {
	cfg      *config.Config
	d        Deps
	st       *store.Store // nil without a database
	app      *App
	registry *provider.Registry
	guard    *admin.Guard // the management routes' checks (route/admin)
	audit    *audit.Log   // the audit log the guard records in; nil without a store

	// What the modules built so far made that later ones use.
	state   *routing.State     // the routing state module's
	account *adminauth.Account // the auth module's; nil without a store
	files   *files.Service     // the files module's; nil without a store
	proxies *proxies.Service   // the proxies module's; nil without a store
	limits  *limits.Gate       // the limits module's; nil without a store
	events  events.Publisher   // the webhooks module's; nil without a store (publisher())

	// The stages installed so far.
	rewriters   []pipeline.Rewriter
	gates       []feature.Stage
	cache       pipeline.Cache
	idempotency pipeline.Idempotency
	responses   pipeline.ResponseStore
	health      bool // the router has its health
}

// Feature is one module of an assembled gateway and the routes it
// registered.
type Feature struct {
	feature.Module
	Served []httpx.Route
}

// registry returns a registry with the provider types of parts.
func registry(parts []part) *provider.Registry {
	reg := provider.NewRegistry()
	for _, p := range parts {
		if p.build == nil && p.module.Providers != nil {
			p.module.Providers(reg)
		}
	}
	return reg
}

// build builds the modules of parts in order and installs each one's
// stage as it is built.
func (w *wiring) build(ctx context.Context, parts []part) ([]feature.Module, error) {
	var mods []feature.Module
	names := map[string]bool{}
	for _, p := range parts {
		m := p.module
		if p.build != nil {
			var err error
			if m, err = p.build(ctx, w); err != nil {
				return nil, err
			}
			if m.Name == "" {
				continue // not served in this configuration
			}
			if m.Providers != nil {
				return nil, fmt.Errorf("route: module %s brings provider types but is built from other modules: the registry exists before them", m.Name)
			}
		}
		if m.Name == "" || names[m.Name] {
			return nil, fmt.Errorf("route: module name %q is empty or not unique", m.Name)
		}
		names[m.Name] = true
		if err := w.install(m); err != nil {
			return nil, err
		}
		mods = append(mods, m)
	}
	return mods, nil
}

// install adds m's stage to the pipeline being built.
func (w *wiring) install(m feature.Module) error {
	s := m.Stage
	if s.Gate == nil && s.Cache == nil && s.Idempotency == nil && s.Responses == nil && s.Health == nil && s.Rewrite == nil {
		return nil
	}
	if w.app.API != nil {
		return fmt.Errorf("route: module %s installs a stage but comes after the gateway, which runs the stages", m.Name)
	}
	one := func(what string, have, add any) error {
		if have != nil && add != nil {
			return fmt.Errorf("route: module %s installs a second %s", m.Name, what)
		}
		return nil
	}
	if err := errors.Join(one("cache", w.cache, s.Cache), one("idempotency stage", w.idempotency, s.Idempotency),
		one("response store", w.responses, s.Responses)); err != nil {
		return err
	}
	if s.Gate != nil {
		w.gates = append(w.gates, s)
	}
	if s.Rewrite != nil {
		w.rewriters = append(w.rewriters, s.Rewrite)
	}
	if s.Cache != nil {
		w.cache = s.Cache
	}
	if s.Idempotency != nil {
		w.idempotency = s.Idempotency
	}
	if s.Responses != nil {
		w.responses = s.Responses
	}
	if s.Health != nil {
		if w.health {
			return fmt.Errorf("route: module %s installs a second router health", m.Name)
		}
		w.health = true
		w.app.Router.SetHealth(s.Health)
	}
	return nil
}

// pipeline returns the stages installed so far, the gates in their order
// (modules' order among equals).
func (w *wiring) pipeline() pipeline.Stages {
	gates := slices.Clone(w.gates)
	slices.SortStableFunc(gates, func(a, b feature.Stage) int { return cmp.Compare(a.Order, b.Order) })
	st := pipeline.Stages{Cache: w.cache, Idempotency: w.idempotency, Rewriters: slices.Clone(w.rewriters)}
	for _, g := range gates {
		st.Gates = append(st.Gates, g.Gate)
	}
	return st
}

// migrate applies the schemas modules own under products of their own
// (the route store's own migrations ran when it opened), then runs every
// module's Init.
func migrate(ctx context.Context, db *sqldb.DB, mods []feature.Module) error {
	products := map[string]string{"route": "the route store", "edge": "the edge store"}
	for _, m := range mods {
		mg := m.Migrations
		if mg.Product == "" && mg.FS == nil {
			continue
		}
		if mg.Product == "" || mg.FS == nil {
			return fmt.Errorf("route: module %s names a migration product without its files, or files without a product", m.Name)
		}
		if by, ok := products[mg.Product]; ok {
			return fmt.Errorf("route: module %s migrates product %q, which is %s's", m.Name, mg.Product, by)
		}
		products[mg.Product] = "module " + m.Name
		if db == nil {
			return fmt.Errorf("route: module %s has a schema but the gateway has no database", m.Name)
		}
		if err := sqldb.Migrate(ctx, db, mg.Product, mg.FS); err != nil {
			return err
		}
	}
	for _, m := range mods {
		if m.Init != nil {
			if err := m.Init(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// register registers every module's routes on mux in the modules' order,
// the management routes (behind the dashboard login) only when the
// gateway serves the management API.
func register(mux *httpx.Mux, mods []feature.Module, guard *admin.Guard, serveAdmin bool) []Feature {
	guards := feature.Admin{
		Guarded: feature.Registrar(guard.Guarded(mux)),
		Upload: func(types ...string) feature.Registrar {
			return guard.GuardedUpload(mux, types...)
		},
		Scoped: func(scope string) feature.Registrar {
			return feature.Registrar(guard.Scoped(mux, scope))
		},
	}
	out := make([]Feature, len(mods))
	for i, m := range mods {
		before := len(mux.Routes())
		if m.Routes != nil {
			m.Routes(mux)
		}
		if m.Admin != nil && serveAdmin {
			m.Admin(guards)
		}
		out[i] = Feature{Module: m, Served: mux.Routes()[before:]}
	}
	return out
}

// screened is mux behind the modules' screens (feature.Module.Screen),
// in the modules' order; mux itself when no module screens.
func screened(mux *httpx.Mux, mods []feature.Module) http.Handler {
	var screens []func(*http.Request, func(*http.Request) bool) error
	for _, m := range mods {
		if m.Screen != nil {
			screens = append(screens, m.Screen)
		}
	}
	if len(screens) == 0 {
		return mux
	}
	gw := gatewayAPIRoutes(mux.Routes())
	management := func(r *http.Request) bool { return isManagement(gw, r) }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, s := range screens {
			if err := s(r, management); err != nil {
				httpx.WriteError(w, r, err)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// gatewayAPIRoutes is a mux matching the gateway endpoints that live
// under /api/ (Ollama's /api/chat, /api/tags …): routes labelled for a
// gateway key, catch-alls left out.
func gatewayAPIRoutes(routes []httpx.Route) *http.ServeMux {
	m := http.NewServeMux()
	for _, rt := range routes {
		if rt.Auth != api.AuthGatewayKey || !strings.HasPrefix(rt.Path, "/api/") || strings.HasSuffix(rt.Path, "/") {
			continue
		}
		p := rt.Path
		if rt.Method != "" {
			p = rt.Method + " " + p
		}
		m.Handle(p, http.NotFoundHandler())
	}
	return m
}

// isManagement reports whether r is for the management side: the
// dashboard (/ and /dashboard/) or a path under /api/ that is not a
// gateway endpoint.
func isManagement(gw *http.ServeMux, r *http.Request) bool {
	p := r.URL.Path
	switch {
	case p == "/" || p == "/dashboard" || strings.HasPrefix(p, "/dashboard/"):
		return true
	case strings.HasPrefix(p, "/api/"):
		_, pattern := gw.Handler(r)
		return pattern == ""
	}
	return false
}
