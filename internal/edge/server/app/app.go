// Package app assembles the OmniEdge control plane from configuration and
// runs it: the SQL store, presence, login sessions, rate limiter and
// network notices (in memory, or in Redis when one is configured so
// replicas agree), the Service, the HTTP API, and the built-in nucleus
// over the Service. New builds it; Run runs everything but the HTTP
// listener (the nucleus on its UDP socket and the background work) until
// the context ends. The CLI and the end-to-end tests build the product
// through it.
package app

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/server/api"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/dashboard"
	"github.com/omniedge/omni/internal/edge/server/netevents"
	"github.com/omniedge/omni/internal/edge/server/presence"
	"github.com/omniedge/omni/internal/edge/server/session"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/ratelimit"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// App is an assembled control plane.
type App struct {
	Service *control.Service
	API     *api.Server
	Store   *store.Store
	// Dashboard is the web dashboard served at "/" (Handler).
	Dashboard *dashboard.Handler
	events    events
	// nucleusKey is the built-in nucleus's static key, derived from the
	// master key: every replica and every restart has the same.
	nucleusKey *ecdh.PrivateKey
	// What Run needs to serve the built-in nucleus.
	nucleusListen string
	clock         clock.Clock
	nucleusLog    *slog.Logger
	metrics       prometheus.Registerer
}

// NucleusKeyPurpose names the built-in nucleus's static X25519 key among
// the keys derived from the master key.
const NucleusKeyPurpose = "omni/edge/nucleus/x25519/v1"

// NucleusKey is the built-in nucleus's static key of a master key.
func NucleusKey(masterKey []byte) (*ecdh.PrivateKey, error) {
	return nucleus.NewPrivateKey(auth.DeriveKey(masterKey, NucleusKeyPurpose))
}

// events is the bus of network notices (see netevents).
type events interface {
	control.NetworkEvents
	Subscribe(f func(networkID string))
	SubscribeAll(f func())
	Run(ctx context.Context) error
	Ready() bool
}

// Deps are the shared resources an App is built on; Redis may be nil.
type Deps struct {
	DB        *sqldb.DB
	Redis     *redis.Client
	Clock     clock.Clock
	Log       *slog.Logger
	MasterKey []byte
	// RedisPrefix namespaces the keys in Redis (default: the configured
	// prefix + "edge:"), so tests and deployments can share one server.
	RedisPrefix string
	// Metrics receives the built-in nucleus's counters when Run serves it
	// (nil: none).
	Metrics prometheus.Registerer
	// NucleusLog is the built-in nucleus's logger when Run serves it (nil:
	// Log).
	NucleusLog *slog.Logger
}

// New migrates the database and builds the control plane.
func New(ctx context.Context, cfg *config.Config, d Deps) (*App, error) {
	st, err := store.New(ctx, d.DB)
	if err != nil {
		return nil, err
	}
	var (
		pres     control.PresenceStore
		sessions control.SessionStore
		limiter  ratelimit.Limiter
		revoked  control.RevocationSet // nil: the Service's in-process set
		lim      = session.Limits{PerIP: cfg.LoginPendingPerIP, Total: cfg.LoginPendingMax}
		bus      events
	)
	retention := 4 * cfg.OnlineWindow
	if d.Redis != nil {
		prefix := d.RedisPrefix
		if prefix == "" {
			prefix = cfg.RedisPrefix + "edge:"
		}
		pres = presence.NewRedis(d.Redis, prefix, retention)
		sessions = session.NewRedisLimited(d.Redis, prefix, d.Clock, lim)
		rv := session.NewRedisRevocations(d.Redis, prefix, d.Clock)
		if err := rv.Load(ctx); err != nil {
			return nil, err
		}
		revoked = rv
		limiter = ratelimit.NewRedis(d.Redis, prefix+"rl:", d.Clock)
		bus = netevents.NewRedis(d.Redis, prefix)
	} else {
		pres = presence.NewMemory(d.Clock, retention)
		sessions = session.NewMemoryLimited(d.Clock, lim)
		limiter = ratelimit.NewMemory(d.Clock)
		bus = netevents.NewMemory()
	}
	svc, err := control.New(control.Deps{Store: st, Presence: pres, Sessions: sessions, Revoked: revoked, Clock: d.Clock, Log: d.Log, MasterKey: d.MasterKey, Events: bus}, control.OptionsFrom(cfg))
	if err != nil {
		return nil, err
	}
	if err := svc.LoadRevoked(ctx); err != nil {
		return nil, err
	}
	// Another replica's changes wake this one's waits on names.
	bus.Subscribe(svc.NetworkNotice)
	bus.SubscribeAll(svc.NetworkNoticeAll)
	host, port, err := nucleusAdvert(cfg)
	if err != nil {
		return nil, err
	}
	nk, err := NucleusKey(d.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("app: nucleus key: %w", err)
	}
	a := api.New(svc, limiter, api.Config{
		RateToken: cfg.RateLimitToken, RateIP: cfg.RateLimitIP, TrustProxy: cfg.TrustedProxies(), PublicURL: cfg.PublicURL,
		NucleusHost: host, NucleusPort: port, NucleusName: cfg.NucleusName, SocketsPerIP: cfg.LoginSocketsPerIP,
		NucleusPublicKey: nucleus.PublicKeyOf(nk).String(),
	}, d.Log)
	dash, err := dashboard.New()
	if err != nil {
		return nil, err
	}
	nlog := d.NucleusLog
	if nlog == nil {
		nlog = d.Log
	}
	return &App{Service: svc, API: a, Store: st, Dashboard: dash, events: bus, nucleusKey: nk,
		nucleusListen: cfg.NucleusListen, clock: d.Clock, nucleusLog: nlog, metrics: d.Metrics}, nil
}

// Run runs the control plane until ctx ends, everything but its HTTP
// listener (the caller serves Handler): it listens on cfg.NucleusListen
// (UDP) and serves the built-in nucleus there (see Nucleus), and does the
// background work (see RunBackground). It fails at once when the nucleus
// cannot listen; when the nucleus fails later, the background work stops
// too (its last presence flush included) and Run returns the error.
func (a *App) Run(ctx context.Context) error {
	pc, err := net.ListenPacket("udp", a.nucleusListen)
	if err != nil {
		return fmt.Errorf("nucleus: %w", err)
	}
	nuc, err := a.Nucleus(nucleus.Options{Clock: a.clock, Log: a.nucleusLog, Registry: a.metrics})
	if err != nil {
		pc.Close()
		return err
	}
	a.nucleusLog.Info("nucleus listening", "addr", pc.LocalAddr().String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		err := nuc.Serve(ctx, pc)
		cancel()
		served <- err
	}()
	err = a.RunBackground(ctx)
	cancel()
	return errors.Join(<-served, err)
}

// RunBackground does the control plane's background work until ctx ends:
// the Service's (presence flushes, other replicas' writes) and following
// the network notices of every replica. Run calls it; tests that serve a
// nucleus of their own (Nucleus) call it alone.
func (a *App) RunBackground(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- a.events.Run(ctx) }()
	err := a.Service.Run(ctx)
	return errors.Join(err, <-done)
}

// Ready reports whether the App follows the other replicas' network
// notices (always true without Redis).
func (a *App) Ready() bool { return a.events.Ready() }

// Nucleus builds the built-in nucleus over this control plane: the
// Service answers its directory questions, and it reloads every network a
// replica announces as changed (a member left or was deleted, the secret
// rotated, a device key changed), and every network it holds when the
// notices' subscription was (re)established (notices may have been
// missed meanwhile). o.Directory is set here, and
// o.PrivateKey to the key derived from the master key (the one join
// answers name) unless set.
func (a *App) Nucleus(o nucleus.Options) (*nucleus.Server, error) {
	o.Directory = directory{a.Service}
	if o.PrivateKey == nil {
		o.PrivateKey = a.nucleusKey
	}
	srv, err := nucleus.NewServer(o)
	if err != nil {
		return nil, err
	}
	a.events.Subscribe(srv.Invalidate)
	a.events.SubscribeAll(srv.InvalidateAll)
	return srv, nil
}

// directory adapts the Service to nucleus.Directory.
type directory struct{ svc *control.Service }

func (d directory) Network(ctx context.Context, id string) (nucleus.NetworkInfo, error) {
	n, err := d.svc.NucleusNetwork(ctx, id)
	if control.KindOf(err) == control.KindNotFound {
		return nucleus.NetworkInfo{}, nucleus.ErrUnknownNetwork
	}
	if err != nil {
		return nucleus.NetworkInfo{}, err
	}
	info := nucleus.NetworkInfo{Secret: n.Secret, SecretVersion: uint32(n.SecretVersion)}
	for _, m := range n.Members {
		k, err := wgkey.ParsePublic(m.PublicKey)
		if err != nil {
			continue // no key: not admitted
		}
		info.Members = append(info.Members, nucleus.Binding{Key: k, IP4: m.IP4, IP6: m.IP6})
	}
	return info, nil
}

// nucleusAdvert returns the configured public nucleus address, or the
// listen address when it names a host; otherwise "" and the port, so the
// API derives the host from the request.
func nucleusAdvert(cfg *config.Config) (host, port string, err error) {
	h, p, err := net.SplitHostPort(cfg.NucleusListen)
	if err != nil {
		return "", "", fmt.Errorf("app: --nucleus-listen: %w", err)
	}
	if cfg.NucleusPublic != "" {
		return cfg.NucleusPublic, p, nil
	}
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return net.JoinHostPort(h, p), p, nil
	}
	return "", p, nil
}

// Handler returns the API, and the dashboard for every path the API does
// not answer; the caller adds metrics and middleware.
func (a *App) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.API.Handles(r) {
			a.API.ServeHTTP(w, r)
			return
		}
		a.Dashboard.ServeHTTP(w, r)
	})
}
