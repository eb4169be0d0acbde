// Package manage is the OmniRoute gateway's management layer: it builds the
// live routing table from config-declared providers, aliases and combos
// (read-only) plus the ones kept in the route store, applies every change
// to the table at once, keeps the set of gateway API keys in memory, and
// serves the management HTTP API under /api/ (dashboard login, keys,
// providers and their credentials, custom models, aliases, combos,
// model→combo mappings, pricing). It depends on the store, the routing
// table and the provider registry only through the small interfaces
// declared here.
package manage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/ratelimit"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the manager needs from the route store.
type Store interface {
	Epoch(ctx context.Context) (int64, error)

	Providers(ctx context.Context) ([]store.Provider, error)
	Provider(ctx context.Context, id string) (store.Provider, error)
	CreateProvider(ctx context.Context, p store.Provider) error
	UpdateProvider(ctx context.Context, p store.Provider, replaceCredentials bool) error
	SealHeaders(ctx context.Context) (int, error)
	DeleteProvider(ctx context.Context, id string) error
	AddCredential(ctx context.Context, providerID string, c store.Credential) (store.Credential, error)
	DeleteCredential(ctx context.Context, providerID, id string) error

	APIKeys(ctx context.Context) ([]store.APIKey, error)
	CreateAPIKey(ctx context.Context, k store.APIKey) error
	DeleteAPIKey(ctx context.Context, id string) error
	TouchAPIKeys(ctx context.Context, ids []string, t time.Time) error
	APIKey(ctx context.Context, id string) (store.APIKey, error)
	UpdateAPIKey(ctx context.Context, k store.APIKey) error
	RevokeAPIKey(ctx context.Context, id string, t time.Time) error
	IssueRegisteredKey(ctx context.Context, k store.APIKey, max, perIssuer int, now time.Time) (store.APIKey, bool, error)
	LiveRegisteredKeys(ctx context.Context, issuerID, provider, accountID string, now time.Time) (int, error)

	Aliases(ctx context.Context) ([]store.Alias, error)
	SetAlias(ctx context.Context, a store.Alias) (bool, error)
	DeleteAlias(ctx context.Context, name string) error

	Combos(ctx context.Context) ([]store.Combo, error)
	Combo(ctx context.Context, name string) (store.Combo, error)
	CreateCombo(ctx context.Context, c store.Combo) error
	UpdateCombo(ctx context.Context, c store.Combo) error
	DeleteCombo(ctx context.Context, name string) error

	Mappings(ctx context.Context) ([]store.Mapping, error)
	Mapping(ctx context.Context, id string) (store.Mapping, error)
	CreateMapping(ctx context.Context, m store.Mapping) (store.Mapping, error)
	UpdateMapping(ctx context.Context, m store.Mapping) error
	DeleteMapping(ctx context.Context, id string) error

	ProviderModels(ctx context.Context) ([]store.ProviderModel, error)
	AddProviderModel(ctx context.Context, m store.ProviderModel) error
	UpdateProviderModel(ctx context.Context, m store.ProviderModel) error
	DeleteProviderModel(ctx context.Context, provider, model string) error

	Prices(ctx context.Context) ([]store.Price, error)
	SetPrice(ctx context.Context, p store.Price) error
	DeletePrice(ctx context.Context, pattern string) error

	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
	SetSettingIfAbsent(ctx context.Context, key, value string) (bool, error)
	CompareAndSwapSetting(ctx context.Context, key, old, value string) (bool, error)
	SetPassword(ctx context.Context, hash string) error
	SetFirstPassword(ctx context.Context, hash string) (bool, error)
	CreateSession(ctx context.Context, id string, now, expires time.Time) error
	SessionValid(ctx context.Context, id string, now time.Time) (bool, error)
	DeleteSession(ctx context.Context, id string) error
}

// Table is the live routing table the manager keeps current.
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

// PricerSink receives the effective price table (the router, for the
// cost-optimized strategy).
type PricerSink interface {
	SetPricer(p router.Pricer)
}

// Options configure a Manager.
type Options struct {
	Route    config.RouteConfig // config-declared state, read-only
	Store    Store              // nil: configuration only, no management API
	Table    Table
	Registry Registry
	Pricing  PricerSink   // optional
	HTTP     *http.Client // upstream client for adapters

	MasterKey       []byte         // signs dashboard sessions (required with Store)
	InitialPassword string         // dashboard password set at first start when none is stored
	TrustProxy      []netip.Prefix // proxies whose X-Forwarded-For gives the client IP (login rate limit, FromGatewayHost)
	// AllowedHosts are the Host names (HOST or HOST:PORT; "*": any) the
	// management API answers under besides the loopback names.
	AllowedHosts []string
	SessionTTL   time.Duration // dashboard session lifetime (default 24h)
	SyncInterval time.Duration // how often Run checks for changes made by replicas (default 2s)
	// ProviderChanged, when set, is told after a stored provider was
	// updated or deleted or gained or lost a credential, so that what was
	// learnt about its old configuration (breakers, cooldowns, lockouts)
	// can be forgotten.
	ProviderChanged func(ctx context.Context, provider string)

	Clock clock.Clock
	Log   *slog.Logger
}

// Manager owns the gateway's managed state.
type Manager struct {
	opt     Options
	store   Store
	clock   clock.Clock
	log     *slog.Logger
	signer  *auth.Signer
	limiter ratelimit.Limiter
	keys    KeySet
	hosts   hostSet

	reloadMu sync.Mutex // serialises reloads and the table updates they make
	epoch    int64      // store epoch the current snapshot was read at
	applied  applied    // what the last reload put into the table
	snap     atomic.Pointer[snapshot]
}

// ModelInfo is one model the gateway lists.
type ModelInfo struct {
	ID      string
	OwnedBy string
	Kind    string // chat, embedding, image, combo, alias
}

// New builds a manager; call Load before serving.
func New(opt Options) (*Manager, error) {
	if opt.Table == nil || opt.Registry == nil {
		return nil, errors.New("manage: Table and Registry are required")
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
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 24 * time.Hour
	}
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = 2 * time.Second
	}
	m := &Manager{opt: opt, store: opt.Store, clock: opt.Clock, log: opt.Log, limiter: ratelimit.NewMemory(opt.Clock), hosts: newHostSet(opt.AllowedHosts)}
	m.keys.now = opt.Clock.Now
	if opt.Store != nil {
		if len(opt.MasterKey) < 32 {
			return nil, errors.New("manage: a 32-byte master key is required with a store")
		}
		s, err := auth.NewSigner(auth.DeriveKey(opt.MasterKey, "route dashboard session"), "omniroute", "omniroute-dashboard")
		if err != nil {
			return nil, err
		}
		m.signer = s
	}
	m.snap.Store(&snapshot{byID: map[string]*providerState{}, aliases: map[string]aliasState{}, combos: map[string]comboState{}})
	return m, nil
}

// Load builds the routing table from configuration and the store and, on
// first start, stores the initial dashboard password — or, without one,
// prints a setup token (setup.go). A config-declared provider that cannot
// be built is an error.
func (m *Manager) Load(ctx context.Context) error {
	if m.store != nil && m.opt.InitialPassword != "" {
		hash, err := auth.HashPassword(m.opt.InitialPassword)
		if err != nil {
			return err
		}
		set, err := m.store.SetSettingIfAbsent(ctx, store.SettingPasswordHash, hash)
		if err != nil {
			return fmt.Errorf("manage: store the initial password: %w", err)
		}
		if set {
			m.log.Info("dashboard password set from INITIAL_PASSWORD")
		}
	}
	if m.store != nil {
		if err := m.prepareSetup(ctx); err != nil {
			return err
		}
	}
	return m.reload(ctx, true)
}

// Run keeps the table in step with changes other replicas make to the
// store and records when gateway keys were last used, until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	if m.store == nil {
		<-ctx.Done()
		return nil
	}
	sync := time.NewTicker(m.opt.SyncInterval)
	defer sync.Stop()
	flush := time.NewTicker(30 * time.Second)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m.flushKeyUse(fctx)
			cancel()
			return nil
		case <-sync.C:
			e, err := m.store.Epoch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					m.log.Warn("route store epoch check failed", "err", err)
				}
				continue
			}
			m.reloadMu.Lock()
			stale := e != m.epoch
			m.reloadMu.Unlock()
			if stale {
				if err := m.reload(ctx, false); err != nil && ctx.Err() == nil {
					m.log.Warn("route reload failed", "err", err)
				}
			}
		case <-flush.C:
			m.flushKeyUse(ctx)
			m.keys.prune()
		}
	}
}

func (m *Manager) flushKeyUse(ctx context.Context) {
	ids := m.keys.takeUsed()
	if len(ids) == 0 {
		return
	}
	if err := m.store.TouchAPIKeys(ctx, ids, m.clock.Now()); err != nil {
		m.log.Warn("recording gateway key use failed", "err", err)
	}
}

// Keys is the in-memory set of stored gateway API keys.
func (m *Manager) Keys() *KeySet { return &m.keys }

// Models lists what /v1/models shows: the models of every enabled
// provider (declared and custom, not hidden), aliases and combos.
func (m *Manager) Models() []ModelInfo { return slices.Clone(m.snap.Load().models) }

// KeySet answers whether a raw gateway key is one of the stored keys,
// from memory (hashes only), and notes which keys are used.
type KeySet struct {
	hashes atomic.Pointer[map[string]string]       // token hash -> key id (revoked keys left out)
	byID   atomic.Pointer[map[string]store.APIKey] // key id -> key, with policy and budget
	now    func() time.Time
	used   sync.Map   // key id -> struct{}
	mu     sync.Mutex // serialises set and prune
}

// Lookup returns the id of the stored gateway key raw is; revoked and
// expired keys are not found.
func (k *KeySet) Lookup(_ context.Context, raw string) (string, bool) {
	mp := k.hashes.Load()
	if mp == nil || raw == "" {
		return "", false
	}
	// auth.TokenHash(raw), built on the stack: indexing the map with
	// string(bytes) does not allocate.
	sum := sha256.Sum256([]byte(raw))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	id, ok := (*mp)[string(h[:])]
	if !ok {
		return "", false
	}
	if key, found := k.Key(id); found && !key.ExpiresAt.IsZero() && k.now != nil && !k.now().Before(key.ExpiresAt) {
		return "", false
	}
	if _, seen := k.used.Load(id); !seen { // a store on every request would write the shared map each time
		k.used.Store(id, struct{}{})
	}
	return id, true
}

// Key returns a stored key (policy and budget included) by id.
func (k *KeySet) Key(id string) (store.APIKey, bool) {
	mp := k.byID.Load()
	if mp == nil {
		return store.APIKey{}, false
	}
	key, ok := (*mp)[id]
	return key, ok
}

// set replaces the keys. Registered keys are kept only while live:
// revoked and expired ones, which may be issued by the thousand, would
// otherwise stay in memory for good. Other keys are kept revoked too, so
// that the keys they issued learn their issuer is revoked.
func (k *KeySet) set(keys []store.APIKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.store(keys)
}

func (k *KeySet) store(keys []store.APIKey) {
	var now time.Time
	if k.now != nil {
		now = k.now()
	}
	mp := make(map[string]string, len(keys))
	byID := make(map[string]store.APIKey, len(keys))
	for _, key := range keys {
		if key.Kind == store.KindRegistered && !live(key, now) {
			continue
		}
		byID[key.ID] = key
		if key.RevokedAt.IsZero() {
			mp[key.Hash] = key.ID
		}
	}
	k.byID.Store(&byID)
	k.hashes.Store(&mp)
}

// live reports a key neither revoked nor expired at now.
func live(key store.APIKey, now time.Time) bool {
	return key.RevokedAt.IsZero() && (key.ExpiresAt.IsZero() || now.IsZero() || now.Before(key.ExpiresAt))
}

// prune drops the registered keys that expired since the keys were set.
func (k *KeySet) prune() {
	k.mu.Lock()
	defer k.mu.Unlock()
	mp := k.byID.Load()
	if mp == nil || k.now == nil {
		return
	}
	now := k.now()
	expired := false
	for _, key := range *mp {
		if key.Kind == store.KindRegistered && !live(key, now) {
			expired = true
			break
		}
	}
	if !expired {
		return
	}
	keys := make([]store.APIKey, 0, len(*mp))
	for _, key := range *mp {
		keys = append(keys, key)
	}
	k.store(keys)
}

func (k *KeySet) takeUsed() []string {
	var ids []string
	k.used.Range(func(id, _ any) bool {
		ids = append(ids, id.(string))
		k.used.Delete(id)
		return true
	})
	sort.Strings(ids)
	return ids
}

// connID names the i-th (0-based) connection of a provider.
func connID(provider string, i int) string { return provider + "#" + strconv.Itoa(i+1) }
