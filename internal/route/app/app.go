// Package app assembles the OmniRoute gateway from configuration: the
// provider registry with every shipped wire format, the routing table
// (config-declared providers, one connection per API key, aliases and
// combos, plus what the management API stored), the router, the HTTP API
// and the management API.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/backup"
	"github.com/omniedge/omni/internal/route/conversations"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/limits"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// App is an assembled gateway.
type App struct {
	Table  *router.Table
	Router *router.Router
	API    *api.Server    // the /v1 gateway alone
	State  *routing.State // the live routing state (providers, aliases, combos, keys, prices)
	// usage records every routed request (route/usage); nil without a database.
	usage *usage.Recorder
	// backups are the database backups (route/backup); nil without a database.
	backups *backup.Service
	// Resilience holds provider breakers, connection cooldowns, model
	// lockouts and the request queue; the router consults it.
	Resilience *resilience.Tracker
	// limits enforces key policies, rate limits and budgets (route/limits);
	// nil without a database.
	limits *limits.Gate
	// responses holds stored Responses conversations in the route store's
	// table (route/conversations); nil with Redis or without a database.
	responses *conversations.SQL
	handler   http.Handler
	mux       *httpx.Mux    // handler's routes
	settle    time.Duration // Deps.SettleTimeout
	log       *slog.Logger
}

// Registry returns a registry with every provider type this build ships:
// each format package registers the types it builds adapters for.
func Registry() *provider.Registry {
	reg := provider.NewRegistry()
	anthropic.Register(reg)
	openai.Register(reg)
	responses.Register(reg)
	gemini.Register(reg)
	ollama.Register(reg)
	return reg
}

// Deps are what Open needs beyond the configuration.
type Deps struct {
	// DB holds the managed state (providers, keys, combos …) next to the
	// other products' tables. nil: configuration only, no management API.
	DB        *sqldb.DB
	MasterKey []byte       // seals provider credentials, signs dashboard sessions (required with DB)
	HTTP      *http.Client // upstream client (nil: a default with generous timeouts for long generations)
	// Redis, when set, holds what replicas must share (limits, budgets,
	// idempotency, cache, breaker state), under keys starting RedisPrefix.
	Redis       *redis.Client
	RedisPrefix string
	Clock       clock.Clock
	Log         *slog.Logger
	// Metrics, when set, gets the gateway's request metrics (route/usage).
	Metrics prometheus.Registerer
	// SettleTimeout bounds how long Run, once its context ends, waits for
	// requests still being handled to settle their spend and usage before
	// the last flush (default DefaultSettleTimeout).
	SettleTimeout time.Duration
}

// DefaultSettleTimeout is Deps.SettleTimeout's default.
const DefaultSettleTimeout = 15 * time.Second

// UpstreamClient is the HTTP client for provider calls: a pool deep
// enough that concurrent requests reuse connections to one upstream (the
// default keeps two idle per host, so every request above two in flight
// would dial anew), and no overall deadline, which would cut long
// streams; an upstream gets ten minutes to start answering, and the
// client's own disconnect cancels the call.
func UpstreamClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	tr.ResponseHeaderTimeout = 10 * time.Minute
	return &http.Client{Transport: tr}
}

// New builds the gateway from cfg.Route alone, without a database: no
// management API and no stored state. hc is the client for upstream calls.
func New(cfg *config.Config, hc *http.Client, clk clock.Clock, log *slog.Logger) (*App, error) {
	return Open(context.Background(), cfg, Deps{HTTP: hc, Clock: clk, Log: log})
}

// Open builds the gateway from cfg.Route and, with d.DB, the route store:
// it migrates the store, stores the initial dashboard password on first
// start, and fills the routing table from both.
func Open(ctx context.Context, cfg *config.Config, d Deps) (*App, error) {
	if d.HTTP == nil {
		d.HTTP = UpstreamClient()
	}
	// Every upstream answer is read under the configured bounds, and no
	// redirect is followed, whichever client the caller gave.
	d.HTTP = upstreamhttp.Bounded(d.HTTP, upstreamhttp.Limits{MaxBody: int64(cfg.Route.UpstreamMaxBody),
		MaxLine: int(cfg.Route.UpstreamMaxLine), IdleTimeout: cfg.Route.UpstreamIdleTimeout, Log: d.Log})
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.SettleTimeout <= 0 {
		d.SettleTimeout = DefaultSettleTimeout
	}
	a := &App{Table: router.NewTable(), settle: d.SettleTimeout, log: d.Log}
	a.Router = router.New(a.Table, d.Clock)
	var st *store.Store // nil: configuration only, no management API
	if d.DB != nil {
		if len(d.MasterKey) < 32 {
			return nil, errors.New("route: a 32-byte master key is required with a database")
		}
		s, err := store.New(ctx, d.DB, d.MasterKey)
		if err != nil {
			return nil, err
		}
		st = s
	}
	mgmt, err := newManagement(cfg, d, st, a)
	if err != nil {
		return nil, err
	}
	if err := mgmt.Load(ctx); err != nil {
		return nil, err
	}
	state := mgmt.state
	a.State = state
	keys := make([]string, len(cfg.Route.APIKeys))
	for i, k := range cfg.Route.APIKeys {
		keys[i] = k.Reveal()
	}
	// Requests without a key: from anywhere only when the operator said
	// so, else from the gateway host itself.
	acfg := api.Config{RequireAPIKey: cfg.Route.RequireAPIKey, AllowAnonymous: cfg.Route.AllowAnonymous, LocalClient: mgmt.guard.FromGatewayHost, APIKeys: keys}
	if st != nil {
		acfg.Keys = state.Keys()
	}
	// Response cache and idempotency (route/cache): an in-memory LRU in
	// front of Redis when replicas share one, else the route store's table.
	cacheHandler := newCache(d, st)
	acfg.Pipeline.Cache, acfg.Pipeline.Idempotency = cacheHandler.Cache, cacheHandler.Idempotency
	// Resilience (route/resilience): breakers, cooldowns, lockouts and the
	// request queue, consulted by the router before every attempt.
	if a.Resilience, err = newResilience(ctx, d, st, a.Router); err != nil {
		return nil, err
	}
	a.Router.SetHealth(a.Resilience)
	// Key policies, RPM/RPD/TPM/TPD limits and USD budgets (route/limits).
	if a.limits, err = newLimits(ctx, d, st, state, a.Table); err != nil {
		return nil, err
	}
	if a.limits != nil {
		acfg.Pipeline.Gates = append(acfg.Pipeline.Gates, a.limits)
	}
	// Usage records (route/usage): the first gate, so it also records
	// the refusals of every later one; nil without a database.
	if a.usage = newUsage(cfg, d, st, state, a.Table, a.Resilience); a.usage != nil {
		acfg.Pipeline.Gates = append([]pipeline.Gate{a.usage}, acfg.Pipeline.Gates...)
	}
	a.API = api.New(a.Router, a, acfg, d.Clock, d.Log)
	// Stored Responses conversations (route/conversations): in Redis when
	// replicas share one, else in the route store's table, else memory.
	rs, sqlResponses := newResponseStore(cfg, d, st)
	a.API.SetResponseStore(rs)
	a.responses = sqlResponses
	// Every route is registered on a recording mux, so the gateway can
	// list what it serves (Routes; docs/route-endpoints.md is made from it).
	mux := httpx.NewMux("")
	a.mux = mux
	mgmt.Register(mux)                 // the management API: /api/auth, keys, providers, models, pricing
	guarded := mgmt.guard.Guarded(mux) // the feature packages' management routes
	// Database backups, export and import (route/backup): /api/db-backups.
	if st != nil {
		if a.backups, err = newBackups(cfg, d, st, mgmt); err != nil {
			return nil, err
		}
		// The import takes the file as the raw body or a multipart form;
		// every other backup route takes JSON only.
		a.backups.Register(guarded, mgmt.guard.GuardedUpload(mux, "application/octet-stream", "application/vnd.sqlite3", "application/x-sqlite3", "multipart/form-data"))
	}
	if st != nil {
		a.Resilience.Register(guarded) // /api/resilience…, /api/rate-limit(s)
	}
	if st != nil {
		cacheHandler.Register(guarded) // /api/cache/stats
	}
	if a.limits != nil {
		a.limits.Register(guarded) // /api/usage/budget
	}
	if a.usage != nil {
		// /api/usage/{history,logs,request-logs,{connectionId}}, /api/telemetry/summary,
		// /api/monitoring/health, /api/sessions, /api/settings/usage-retention
		a.usage.Register(guarded)
	}
	mux.Handle("/", a.API)
	a.handler = mux
	return a, nil
}

// Handler serves the gateway (/v1 …) and, with a store, the management
// API (/api/ …).
func (a *App) Handler() http.Handler { return a.handler }

// Routes lists the routes Handler serves, the gateway's and the
// management API's, in registration order.
func (a *App) Routes() []httpx.Route { return a.mux.Routes() }

// Run keeps the routing table in step with changes made through other
// replicas and records gateway key use, until ctx ends; then it waits
// (at most Deps.SettleTimeout) for the requests still being handled to
// settle, and persists the spend and usage still pending. End ctx after
// the HTTP server has drained or given up draining: requests it cut off
// settle as their handlers return, and what settles after the wait is
// not persisted.
func (a *App) Run(ctx context.Context) error {
	go a.Resilience.Run(ctx) // follows other replicas' breaker trips and cooldowns (with Redis)
	if a.backups != nil {
		go a.backups.Run(ctx, 0) // the daily automatic backup, when turned on
	}
	if a.responses != nil {
		go a.responses.Run(ctx, a.log) // deletes expired stored conversations
	}
	// The spend and usage writers outlive ctx until the requests in
	// flight have settled.
	wctx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriters()
	var limitsDone chan struct{}
	if a.limits != nil {
		// route/limits persists settled spend every few seconds and once
		// more when wctx ends; Run waits for that last flush.
		limitsDone = make(chan struct{})
		go func() { defer close(limitsDone); _ = a.limits.Run(wctx) }()
	}
	var usageDone chan struct{}
	if a.usage != nil {
		// Writes usage records in batches and sweeps old ones; on shutdown
		// it writes what is still queued before Run returns.
		usageDone = make(chan struct{})
		go func() { defer close(usageDone); _ = a.usage.Run(wctx) }()
	}
	err := a.State.Run(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.settle)
	if a.API.Settle(sctx) != nil {
		a.log.Warn("requests still running at shutdown; what they settle from now on is not persisted", "waited", a.settle)
	}
	cancel()
	stopWriters()
	if limitsDone != nil {
		<-limitsDone
	}
	if usageDone != nil {
		<-usageDone
	}
	return err
}

// Models implements api.Models: the current list, which follows changes
// made through the management API.
func (a *App) Models() []api.ModelInfo {
	ms := a.State.Models()
	out := make([]api.ModelInfo, len(ms))
	for i, m := range ms {
		out[i] = api.ModelInfo{ID: m.ID, OwnedBy: m.OwnedBy, Kind: m.Kind}
	}
	return out
}
