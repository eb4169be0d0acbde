package cli

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/app"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/metrics"
	"github.com/omniedge/omni/internal/platform/redisx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// runServe starts the products named by the first argument ("edge",
// "route"; none means both) and blocks until ctx ends.
func runServe(ctx context.Context, env Env, args []string) error {
	edgeOn, routeOn := true, true
	if len(args) > 0 {
		switch args[0] {
		case "edge":
			routeOn, args = false, args[1:]
		case "route":
			edgeOn, args = false, args[1:]
		}
	}
	fs := flag.NewFlagSet("omni serve", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	printConfig := fs.Bool("print-config", false, "print the effective configuration (secrets redacted) and exit")
	cfg, err := config.Load(fs, args, env.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *printConfig {
		fmt.Fprint(env.Stdout, cfg.YAML())
		return nil
	}
	log, err := logging.New(env.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return usageError{err.Error()}
	}
	restart, err := serve(ctx, cfg, log, edgeOn, routeOn, env.Reexec != nil)
	if err == nil && restart {
		log.Info("restarting")
		return env.Reexec()
	}
	return err
}

// serve runs the products until ctx ends, or until the management API
// asks for a shutdown or (with canRestart) a restart, and returns once
// everything has drained; restart reports that a restart was asked for.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, edgeOn, routeOn, canRestart bool) (restart bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var restartAsked atomic.Bool
	reg := metrics.NewRegistry()
	clk := clock.Real{}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		if err == nil {
			return
		}
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	run := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); fail(f()) }()
	}
	// abort stops what runs and returns err or, when something failed
	// meanwhile, that failure first: the edge's nucleus fails in its Run
	// when its port is taken, which cancels ctx under the gateway's start
	// (whose error is then only the cancellation).
	abort := func(err error) error {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case len(errs) == 0:
			return err
		case errors.Is(err, context.Canceled):
			return errors.Join(errs...)
		}
		return errors.Join(append(errs, err)...)
	}

	// Both products share one database (per-product migrations) and one
	// master key.
	key, err := cfg.LoadMasterKey()
	if err != nil {
		return false, err
	}
	for _, w := range cfg.PermissionWarnings() {
		log.Warn(w)
	}
	for _, w := range cfg.TrustProxyWarnings() {
		log.Warn(w)
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseDSN())
	if err != nil {
		return false, err
	}
	defer db.Close()

	var rdb *redis.Client
	if cfg.Redis != "" {
		if rdb, err = redisx.Open(ctx, cfg.Redis.Reveal()); err != nil {
			return false, err
		}
		defer rdb.Close()
	}
	// Each product is built (edge: app.New, route: routeapp.Open), its
	// HTTP API served here, and the rest run by its Run until ctx ends.
	if edgeOn {
		edgeLog := log.With("component", "edge")
		a, err := app.New(ctx, cfg, app.Deps{DB: db, Redis: rdb, Clock: clk, Log: edgeLog, MasterKey: key,
			Metrics: reg, NucleusLog: log.With("component", "nucleus")})
		if err != nil {
			return false, err
		}
		ln, err := net.Listen("tcp", cfg.EdgeListen)
		if err != nil {
			return false, fmt.Errorf("edge API: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/", a.Handler())
		addOps(mux, publicMetrics(cfg, reg), edgeReady(db, rdb, a))
		srv := httpx.NewServer(httpx.Wrap(mux, edgeLog, httpx.NewMetrics(reg, "edge")), edgeLog)
		log.Info("OmniEdge API listening", "addr", ln.Addr().String(), "database", string(db.Dialect), "redis", rdb != nil)
		run(func() error { return httpx.Serve(ctx, srv, ln, cfg.ShutdownGrace, edgeLog) })
		// The built-in nucleus (UDP) and the background work.
		run(func() error { return a.Run(ctx) })
	}
	if routeOn {
		routeLog := log.With("component", "route")
		ln, err := net.Listen("tcp", cfg.RouteListen)
		if err != nil {
			return false, abort(fmt.Errorf("gateway: %w", err))
		}
		d := routeapp.Deps{DB: db, Redis: rdb, RedisPrefix: cfg.RedisPrefix + "route:",
			MasterKey: key, Clock: clk, Log: routeLog, Metrics: reg, Version: Version, Products: []string{"route"},
			// POST /api/shutdown ends ctx as a signal does: every listener
			// drains, the background work settles, serve returns.
			Shutdown: cancel}
		if edgeOn {
			d.Products = []string{"edge", "route"}
		}
		if canRestart {
			d.Restart = func() { restartAsked.Store(true); cancel() }
		}
		gw, err := routeapp.Open(ctx, cfg, d)
		if err != nil {
			ln.Close()
			return false, abort(err)
		}
		mux := http.NewServeMux()
		addOps(mux, publicMetrics(cfg, reg), func(ctx context.Context) error {
			if err := db.Ping(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			return nil
		})
		mux.Handle("/", gw.Handler())
		srv := httpx.NewServer(httpx.Wrap(mux, routeLog, httpx.NewMetrics(reg, "route")), routeLog)
		log.Info("OmniRoute gateway listening", "addr", ln.Addr().String(), "database", string(db.Dialect),
			"config_providers", len(cfg.Route.Providers))
		// The gateway's background work (spend and usage flushes) stops
		// only once the HTTP server has drained: requests finishing
		// during the drain settle spend that the last flush must see.
		gwCtx, gwStop := context.WithCancel(context.WithoutCancel(ctx))
		defer gwStop()
		run(func() error { defer gwStop(); return httpx.Serve(ctx, srv, ln, cfg.ShutdownGrace, routeLog) })
		run(func() error { return gw.Run(gwCtx) })
	}
	if err := serveMetrics(ctx, cfg, reg, log, run); err != nil {
		return false, abort(err)
	}
	<-ctx.Done()
	wg.Wait()
	log.Info("stopped")
	return restartAsked.Load(), errors.Join(errs...)
}

// edgeReady is the edge API's /readyz check: the database and Redis (when
// configured) answer, and the control plane is ready (app.App.Ready: it
// follows the other replicas' network notices).
func edgeReady(db interface{ Ping(context.Context) error }, rdb *redis.Client, a interface{ Ready() bool }) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if rdb != nil {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
		}
		if !a.Ready() {
			return errors.New("edge: not yet following the network notices of the other replicas")
		}
		return nil
	}
}

// addOps adds /healthz (liveness), /readyz (dependencies) and, when
// metrics is not nil, /metrics.
func addOps(mux *http.ServeMux, metrics http.Handler, ready func(context.Context) error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			return &httpx.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "not ready", Err: err}
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return nil
	}))
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
}

// publicMetrics is /metrics for the public listeners: nil (not served)
// unless --metrics-token is set, and then only to its bearer.
func publicMetrics(cfg *config.Config, reg *prometheus.Registry) http.Handler {
	tok := cfg.MetricsToken.Reveal()
	if tok == "" {
		return nil
	}
	want := sha256.Sum256([]byte("Bearer " + tok))
	h := metrics.Handler(reg)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			httpx.WriteError(w, r, httpx.Unauthorized("/metrics needs the metrics token as a bearer token"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics serves /metrics on --metrics-listen (unless "off"). The
// default address may be taken by another process (another omni, a
// local Prometheus): then metrics are skipped with a warning; an address
// the operator chose must work.
func serveMetrics(ctx context.Context, cfg *config.Config, reg *prometheus.Registry, log *slog.Logger, run func(func() error)) error {
	if cfg.MetricsListen == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		if cfg.MetricsListen == config.Default().MetricsListen {
			log.Warn("metrics listener not started (set --metrics-listen to another address, or off)", "addr", cfg.MetricsListen, "err", err)
			return nil
		}
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	mlog := log.With("component", "metrics")
	srv := httpx.NewServer(mux, mlog)
	log.Info("metrics listening", "addr", ln.Addr().String())
	run(func() error { return httpx.Serve(ctx, srv, ln, cfg.ShutdownGrace, mlog) })
	return nil
}
