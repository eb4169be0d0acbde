// Package routing holds the OmniRoute gateway's live routing state: the
// providers, aliases and combos declared in the configuration (read-only)
// and those kept in the route store, custom models, model→combo mappings,
// prices and the set of gateway API keys. It builds the routing table
// from them, installs every change at once, follows the changes other
// replicas make (through the store's epoch) and lists the gateway's
// models. It depends on the store, the routing table and the provider
// registry only through the small interfaces declared here; the
// management HTTP API over it lives under route/admin.
package routing

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the routing state reads from the route store, and the
// two writes it makes on its own (sealing headers stored in plain text,
// recording when keys were used).
type Store interface {
	Epoch(ctx context.Context) (int64, error)
	Providers(ctx context.Context) ([]store.Provider, error)
	Aliases(ctx context.Context) ([]store.Alias, error)
	Combos(ctx context.Context) ([]store.Combo, error)
	Mappings(ctx context.Context) ([]store.Mapping, error)
	ProviderModels(ctx context.Context) ([]store.ProviderModel, error)
	Prices(ctx context.Context) ([]store.Price, error)
	APIKeys(ctx context.Context) ([]store.APIKey, error)
	SealHeaders(ctx context.Context) (int, error)
	TouchAPIKeys(ctx context.Context, ids []string, t time.Time) error
}

// Table is the live routing table the state keeps current.
type Table interface {
	SetProvider(id string, conns []router.Connection)
	SetAlias(name, to string)
	SetCombo(c router.Combo) error
	DeleteCombo(name string)
	SetMappings(ms []router.Mapping) error
}

// Registry builds provider adapters.
type Registry interface {
	New(cfg provider.Config) (router.Adapter, error)
	Types() []string
}

// Proxies chooses the upstream client of each connection: the client
// through the outbound proxy assigned to it (route/proxies).
type Proxies interface {
	// Clients reads the assignments as they are now; every reload calls
	// it after reading the epoch, so a change is installed with the
	// routing state on every replica.
	Clients(ctx context.Context) (ClientFor, error)
}

// ClientFor returns the upstream client of a provider's connection
// (credential "" for the provider as a whole), nil for Options.HTTP.
type ClientFor func(provider, credential string) *http.Client

// PricerSink receives the effective price table (the router, for the
// cost-optimized strategy).
type PricerSink interface {
	SetPricer(p router.Pricer)
}

// Options configure a State.
type Options struct {
	Route    config.RouteConfig // config-declared state, read-only
	Store    Store              // nil: configuration only
	Table    Table
	Registry Registry
	Pricing  PricerSink   // optional
	HTTP     *http.Client // upstream client for adapters
	Proxies  Proxies      // optional: a connection's client when not HTTP

	SyncInterval time.Duration // how often Run checks for changes made by replicas (default 2s)

	Clock clock.Clock
	Log   *slog.Logger
}

// State owns the gateway's live routing state.
type State struct {
	opt   Options
	store Store
	clock clock.Clock
	log   *slog.Logger
	keys  KeySet

	reloadMu sync.Mutex // serialises reloads and the table updates they make
	epoch    int64      // store epoch the current snapshot was read at
	applied  applied    // what the last reload put into the table
	snap     atomic.Pointer[Snapshot]
	clients  atomic.Pointer[ClientFor] // the proxies' choice of the last reload
}

// ModelInfo is one model the gateway lists.
type ModelInfo struct {
	ID      string
	OwnedBy string
	Kind    string // chat, embedding, image, combo, alias
}

// New builds the state; call Load before serving.
func New(opt Options) (*State, error) {
	if opt.Table == nil || opt.Registry == nil {
		return nil, errors.New("routing: Table and Registry are required")
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.HTTP == nil {
		opt.HTTP = &http.Client{Timeout: 10 * time.Minute}
	}
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = 2 * time.Second
	}
	st := &State{opt: opt, store: opt.Store, clock: opt.Clock, log: opt.Log}
	st.keys.now = opt.Clock.Now
	st.snap.Store(&Snapshot{ByID: map[string]*Provider{}, Aliases: map[string]Alias{}, Combos: map[string]Combo{}})
	return st, nil
}

// Load builds the routing table from configuration and the store. A
// config-declared provider that cannot be built is an error.
func (st *State) Load(ctx context.Context) error { return st.reload(ctx, true) }

// Reload reads the stored state again and installs it at once, for those
// who changed it through the store (the management API, route/limits).
func (st *State) Reload(ctx context.Context) error { return st.reload(ctx, false) }

// Run keeps the table in step with changes other replicas make to the
// store and records when gateway keys were last used, until ctx ends.
func (st *State) Run(ctx context.Context) error {
	if st.store == nil {
		<-ctx.Done()
		return nil
	}
	sync := time.NewTicker(st.opt.SyncInterval)
	defer sync.Stop()
	flush := time.NewTicker(30 * time.Second)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st.flushKeyUse(fctx)
			cancel()
			return nil
		case <-sync.C:
			e, err := st.store.Epoch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					st.log.Warn("route store epoch check failed", "err", err)
				}
				continue
			}
			st.reloadMu.Lock()
			stale := e != st.epoch
			st.reloadMu.Unlock()
			if stale {
				if err := st.reload(ctx, false); err != nil && ctx.Err() == nil {
					st.log.Warn("route reload failed", "err", err)
				}
			}
		case <-flush.C:
			st.flushKeyUse(ctx)
			st.keys.prune()
		}
	}
}

func (st *State) flushKeyUse(ctx context.Context) {
	ids := st.keys.takeUsed()
	if len(ids) == 0 {
		return
	}
	if err := st.store.TouchAPIKeys(ctx, ids, st.clock.Now()); err != nil {
		st.log.Warn("recording gateway key use failed", "err", err)
	}
}

// Keys is the in-memory set of stored gateway API keys.
func (st *State) Keys() *KeySet { return &st.keys }

// Models lists what /v1/models shows: the models of every enabled
// provider (declared and custom, not hidden), aliases and combos.
func (st *State) Models() []ModelInfo { return slices.Clone(st.snap.Load().models) }

// Snapshot is the state of the last reload, to read without locks and
// never modify.
func (st *State) Snapshot() *Snapshot { return st.snap.Load() }

// Resolve answers which targets, in order, and which strategy a model
// name leads to now, as the router resolves it (aliases, combos,
// provider/model, mappings), when the table can tell.
func (st *State) Resolve(model string) ([]router.Target, string, error) {
	r, ok := st.opt.Table.(interface {
		Resolve(string) ([]router.Target, string, error)
	})
	if !ok {
		return nil, "", errors.New("routing: this table does not resolve model names")
	}
	return r.Resolve(model)
}

// Types lists the provider types the registry builds.
func (st *State) Types() []string { return st.opt.Registry.Types() }

// Adapter builds the adapter of provider p with the API key key; an
// error names what is wrong with p's type or base URL.
// It goes through the outbound proxy assigned to p (or globally).
func (st *State) Adapter(p *Provider, key string) (router.Adapter, error) {
	return st.adapter(p, "", key)
}

// adapter builds the adapter of provider p's credential (its id) with
// the API key key, through the proxy assigned to it.
func (st *State) adapter(p *Provider, credential, key string) (router.Adapter, error) {
	hc := st.opt.HTTP
	if f := st.clients.Load(); f != nil && *f != nil {
		if c := (*f)(p.ID, credential); c != nil {
			hc = c
		}
	}
	return st.opt.Registry.New(provider.Config{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, APIKey: key, Headers: p.Headers, HTTP: hc})
}

// connID names the i-th (0-based) connection of a provider.
func connID(provider string, i int) string { return provider + "#" + strconv.Itoa(i+1) }
