// Package proxies owns the gateway's outbound proxies: the registry of
// HTTP, HTTPS and SOCKS5 proxies (credentials sealed at rest, never
// shown), their assignments to the whole gateway, a provider or one
// connection (connection beats provider beats global), the choice of
// each connection's upstream client that the routing state installs on
// every reload (routing.Proxies), the health sums of the upstream calls
// sent through each proxy, and the management API over them
// (/api/v1/management/proxies…, /api/settings/proxy, its test).
package proxies

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/routing"
)

// Caps.
const (
	MaxProxies     = 1000
	MaxAssignments = 10000
	MaxBulk        = 500
	// HealthRetention is how long the hourly health sums are kept (and
	// the widest window /health answers for).
	HealthRetention = 7 * 24 * time.Hour
	// TestTimeout bounds POST /api/settings/proxy/test.
	TestTimeout = 10 * time.Second
)

// Scopes of an assignment.
const (
	ScopeGlobal     = "global"
	ScopeProvider   = "provider"
	ScopeConnection = "connection"
)

// Options configure a Service.
type Options struct {
	DB        *sqldb.DB // migrated with Migrations
	MasterKey []byte
	// HTTP is the gateway's upstream client; a proxy's client is this
	// one (same bounds, TLS roots and pool) sending through the proxy.
	HTTP *http.Client
	// Reload installs a change at once on this replica (the routing
	// state's Reload); the others follow the epoch.
	Reload func(ctx context.Context) error
	// ProviderOf names the provider of a connection (stored credential
	// id), for resolve_connection_id.
	ProviderOf func(credential string) (string, bool)

	FlushInterval time.Duration // health sums to the store (default 10s)
	Clock         clock.Clock
	Log           *slog.Logger
}

// Service is the outbound proxies' registry, assignments and health.
type Service struct {
	opt     Options
	store   *Store
	clients *clients
	health  *recorder
	log     *slog.Logger
	clock   clock.Clock

	pruned  time.Time // when hours past retention were last dropped (Run's and handlers' flushes)
	flushMu sync.Mutex
}

// New builds the service.
func New(opt Options) (*Service, error) {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.HTTP == nil {
		opt.HTTP = http.DefaultClient
	}
	if opt.Reload == nil {
		opt.Reload = func(context.Context) error { return nil }
	}
	if opt.ProviderOf == nil {
		opt.ProviderOf = func(string) (string, bool) { return "", false }
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 10 * time.Second
	}
	st, err := NewStore(opt.DB, opt.MasterKey, opt.Clock.Now)
	if err != nil {
		return nil, err
	}
	rec := newRecorder(opt.Clock.Now)
	return &Service{opt: opt, store: st, health: rec, log: opt.Log, clock: opt.Clock,
		clients: &clients{base: opt.HTTP, health: rec, byID: map[string]cachedClient{}}}, nil
}

// Module is the outbound proxies as a gateway feature: the management
// routes, the schema of its own and the loop flushing health sums.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:       "proxies",
		Package:    "route/proxies",
		Admin:      s.Register,
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Run:        s.Run,
		Lifetime:   feature.Settling,
	}
}

// choice is where the assignments point, read at one reload.
type choice struct {
	global     string
	provider   map[string]string
	connection map[string]string
}

func (c choice) resolve(provider, credential string) (scope, proxyID string) {
	if credential != "" && !strings.HasPrefix(credential, "config#") {
		if id, ok := c.connection[credential]; ok {
			return ScopeConnection, id
		}
	}
	if id, ok := c.provider[provider]; ok {
		return ScopeProvider, id
	}
	if c.global != "" {
		return ScopeGlobal, c.global
	}
	return "", ""
}

func newChoice(as []Assignment) choice {
	c := choice{provider: map[string]string{}, connection: map[string]string{}}
	for _, a := range as {
		switch a.Scope {
		case ScopeGlobal:
			c.global = a.ProxyID
		case ScopeProvider:
			c.provider[a.ScopeID] = a.ProxyID
		case ScopeConnection:
			c.connection[a.ScopeID] = a.ProxyID
		}
	}
	return c
}

// Clients reads the proxies and assignments as they are now and returns
// each connection's client (routing.Proxies): the connection's proxy,
// else its provider's, else the global one, else none (nil).
func (s *Service) Clients(ctx context.Context) (routing.ClientFor, error) {
	ps, err := s.store.List(ctx)
	if err != nil {
		return nil, err
	}
	as, err := s.store.Assignments(ctx, Filter{})
	if err != nil {
		return nil, err
	}
	byID := map[string]*http.Client{}
	keep := map[string]bool{}
	for _, p := range ps {
		byID[p.ID] = s.clients.get(p)
		keep[p.ID] = true
	}
	s.clients.retain(keep)
	c := newChoice(as)
	return func(provider, credential string) *http.Client {
		_, id := c.resolve(provider, credential)
		if id == "" {
			return nil
		}
		return byID[id]
	}, nil
}

// Run flushes the health sums to the store until ctx ends, then once
// more.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.flush(fctx)
			cancel()
			return nil
		case <-t.C:
			s.flush(ctx)
		}
	}
}

// flush writes the sums taken so far and drops hours past retention;
// with nothing to write it writes nothing, but once an hour.
func (s *Service) flush(ctx context.Context) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	rows := s.health.take()
	now := s.clock.Now()
	if len(rows) == 0 && now.Sub(s.pruned) < time.Hour {
		return
	}
	s.pruned = now
	keepFrom := now.Add(-HealthRetention).Unix() / 3600
	if err := s.store.AddHealth(ctx, rows, keepFrom); err != nil {
		s.health.giveBack(rows)
		if ctx.Err() == nil {
			s.log.Warn("writing proxy health failed", "err", err)
		}
	}
}
