// Package app assembles the OmniRoute gateway from configuration and one
// explicit list of feature modules (modules.go; route/feature): the
// provider registry from the wire formats' provider types, the routing
// state and table (config-declared providers, one connection per API
// key, aliases and combos, plus what the management API stored), the
// router, the pipeline stages, the HTTP API and the management API, one
// package per resource.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/webhooks"
)

// App is an assembled gateway.
type App struct {
	Table  *router.Table
	Router *router.Router
	API    *api.Server    // the /v1 gateway alone
	State  *routing.State // the live routing state (providers, aliases, combos, keys, prices)
	// Resilience holds provider breakers, connection cooldowns, model
	// lockouts and the request queue; the router consults it.
	Resilience *resilience.Tracker
	features   []Feature // the assembled modules, in the list's order
	handler    http.Handler
	mux        *httpx.Mux    // handler's routes
	settle     time.Duration // Deps.SettleTimeout
	log        *slog.Logger
	listed     func(id string) bool // nil: every model is listed (route/policies)

	// Webhooks sends the events to their subscribers (nil without a store).
	Webhooks *webhooks.Service
}

// Registry returns a registry with every provider type this build ships:
// those the wire formats of the module list bring (each format package
// registers the types it builds adapters for).
func Registry() *provider.Registry { return registry(modules()) }

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
	// Version is the binary's version and Products the products the
	// process serves ("edge", "route"), for /api/init and
	// /api/system-info.
	Version  string
	Products []string
	// Shutdown and Restart, when set, are how POST /api/shutdown and
	// /api/restart ask the process to stop, or to stop and start again,
	// after draining its requests; called after the answer is sent, they
	// must not block. nil: those endpoints answer 501.
	Shutdown func()
	Restart  func()
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
	return open(ctx, cfg, d, modules())
}

// open builds the gateway from the module list parts: builds the modules
// in order (installing each one's stage), migrates the schemas they own,
// runs their Init, and registers their routes.
func open(ctx context.Context, cfg *config.Config, d Deps, parts []part) (*App, error) {
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
	guard, auditLog, err := newGuard(cfg, d, st)
	if err != nil {
		return nil, err
	}
	w := &wiring{cfg: cfg, d: d, st: st, app: a, registry: registry(parts), guard: guard, audit: auditLog}
	mods, err := w.build(ctx, parts)
	if err != nil {
		return nil, err
	}
	if a.State == nil || a.API == nil {
		return nil, errors.New("route: the module list has no routing state or no gateway")
	}
	if err := migrate(ctx, d.DB, mods); err != nil {
		return nil, err
	}
	// Every route is registered on a recording mux, so the gateway can
	// list what it serves (Routes; docs/route-endpoints.md is made from it).
	mux := httpx.NewMux("")
	a.mux = mux
	a.features = register(mux, mods, guard, st != nil)
	a.handler = screened(mux, mods)
	return a, nil
}

// Handler serves the gateway (/v1 …) and, with a store, the management
// API (/api/ …).
func (a *App) Handler() http.Handler { return a.handler }

// Routes lists the routes Handler serves, the gateway's and the
// management API's, in registration order.
func (a *App) Routes() []httpx.Route { return a.mux.Routes() }

// Features lists the gateway's modules, in the list's order, with the
// routes each registered.
func (a *App) Features() []Feature { return append([]Feature(nil), a.features...) }

// Run runs every module's background loop until ctx ends: among them the
// routing state's, which keeps the routing table in step with changes made
// through other replicas and records gateway key use, and whose return
// Run waits for. Then it waits (at most Deps.SettleTimeout) for the
// requests still being handled to settle, and stops the settling loops,
// which persist the spend and usage still pending, waiting for their
// last flush. End ctx after the HTTP server has drained or given up
// draining: requests it cut off settle as their handlers return, and
// what settles after the wait is not persisted.
func (a *App) Run(ctx context.Context) error {
	// The spend and usage writers outlive ctx until the requests in
	// flight have settled.
	wctx, stopWriters := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriters()
	var writers, awaited sync.WaitGroup
	errs := make([]error, len(a.features))
	for i, f := range a.features {
		run := f.Run
		if run == nil {
			continue
		}
		switch f.Lifetime {
		case feature.Settling:
			writers.Add(1)
			go func() { defer writers.Done(); _ = run(wctx) }()
		case feature.Awaited:
			awaited.Add(1)
			go func() { defer awaited.Done(); errs[i] = run(ctx) }()
		default:
			go func() { _ = run(ctx) }()
		}
	}
	awaited.Wait()
	var err error
	for _, e := range errs {
		if e != nil {
			err = e
			break
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.settle)
	unsettled := false
	for _, f := range a.features {
		if f.Settle != nil && f.Settle(sctx) != nil {
			unsettled = true
		}
	}
	if unsettled {
		a.log.Warn("requests still running at shutdown; what they settle from now on is not persisted", "waited", a.settle)
	}
	cancel()
	stopWriters()
	writers.Wait()
	return err
}

// Models implements api.Models: the current list, which follows changes
// made through the management API.
func (a *App) Models() []api.ModelInfo {
	ms := a.State.Models()
	out := make([]api.ModelInfo, 0, len(ms))
	for _, m := range ms {
		if a.listed != nil && !a.listed(m.ID) {
			continue
		}
		out = append(out, api.ModelInfo{ID: m.ID, OwnedBy: m.OwnedBy, Kind: m.Kind})
	}
	return out
}
