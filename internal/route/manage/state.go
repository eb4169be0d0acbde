package manage

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// Sources of a provider, alias or combo.
const (
	sourceConfig = "config"
	sourceStored = "stored"
)

// Model kinds.
var modelKinds = []string{"chat", "embedding", "image"}

// providerState is a provider as the gateway runs it.
type providerState struct {
	ID, Type, BaseURL string
	Headers           map[string]string
	Models            []string // declared
	Enabled           bool
	Source            string
	Credentials       []store.Credential
	ParamRules        []provider.ParamRule // config-declared
	Timeout           time.Duration        // config-declared first-answer bound
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

type aliasState struct {
	Target, Source string
	CreatedAt      time.Time
}

type comboState struct {
	store.Combo
	Source string
}

// snapshot is the state of the last reload; handlers read it without
// locks and never modify it.
type snapshot struct {
	providers []*providerState // by id
	byID      map[string]*providerState
	aliases   map[string]aliasState
	combos    map[string]comboState
	mappings  []store.Mapping
	custom    []store.ProviderModel
	prices    *priceTable
	models    []ModelInfo
}

// applied records what the last reload installed in the table, so the
// next one can remove what disappeared.
type applied struct {
	providers map[string]bool
	aliases   map[string]bool
	combos    map[string]bool
}

// reload reads the configuration and the store, rebuilds every
// provider's connections and replaces the table's contents. strict makes
// a config-declared provider that cannot be built an error (at start).
func (m *Manager) reload(ctx context.Context, strict bool) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()

	var (
		epoch    int64
		stored   []store.Provider
		aliases  []store.Alias
		combos   []store.Combo
		mappings []store.Mapping
		custom   []store.ProviderModel
		prices   []store.Price
		keys     []store.APIKey
	)
	if m.store != nil {
		// The epoch is read first: a change committed while loading makes
		// the next check reload again rather than being missed.
		var err error
		if epoch, err = m.store.Epoch(ctx); err != nil {
			return err
		}
		if stored, err = m.store.Providers(ctx); err != nil {
			return err
		}
		if aliases, err = m.store.Aliases(ctx); err != nil {
			return err
		}
		if combos, err = m.store.Combos(ctx); err != nil {
			return err
		}
		if mappings, err = m.store.Mappings(ctx); err != nil {
			return err
		}
		if custom, err = m.store.ProviderModels(ctx); err != nil {
			return err
		}
		if prices, err = m.store.Prices(ctx); err != nil {
			return err
		}
		if keys, err = m.store.APIKeys(ctx); err != nil {
			return err
		}
	}

	s := &snapshot{byID: map[string]*providerState{}, aliases: map[string]aliasState{}, combos: map[string]comboState{}, custom: custom}
	for _, p := range m.opt.Route.Providers {
		ps := &providerState{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Models: p.Models, Enabled: true, Source: sourceConfig, Timeout: p.Timeout}
		for _, r := range p.ParamRules {
			ps.ParamRules = append(ps.ParamRules, provider.ParamRule{Type: p.Type, Model: r.Model, Drop: r.Drop, OneOf: r.OneOf})
		}
		if err := provider.ValidateParamRules(ps.ParamRules); err != nil {
			return fmt.Errorf("route provider %s: %w", p.ID, err)
		}
		for i, k := range p.APIKeys {
			ps.Credentials = append(ps.Credentials, store.Credential{ID: "config#" + fmt.Sprint(i+1), APIKey: k.Reveal(), Enabled: true})
		}
		s.byID[p.ID] = ps
	}
	plain := false
	for _, p := range stored {
		plain = plain || p.PlainSecretHeaders
		if p.SecretHeadersUnreadable {
			m.log.Warn("secret headers sealed with another master key left out", "provider", p.ID)
		}
		if _, dup := s.byID[p.ID]; dup {
			m.log.Warn("stored provider ignored: the configuration declares the same id", "provider", p.ID)
			continue
		}
		s.byID[p.ID] = &providerState{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Models: p.Models, Enabled: p.Enabled,
			Source: sourceStored, Credentials: p.Credentials, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	}
	if plain {
		// Written before secret headers were sealed (or restored from
		// such a backup): seal them now.
		if n, err := m.store.SealHeaders(ctx); err != nil {
			m.log.Warn("sealing provider headers failed", "err", err)
		} else if n > 0 {
			m.log.Info("provider headers sealed at rest", "providers", n)
		}
	}
	for _, p := range s.byID {
		s.providers = append(s.providers, p)
	}
	sort.Slice(s.providers, func(i, j int) bool { return s.providers[i].ID < s.providers[j].ID })

	conns := map[string][]router.Connection{}
	for _, p := range s.providers {
		cs, err := m.connections(p)
		if err != nil {
			if strict && p.Source == sourceConfig {
				return fmt.Errorf("route provider %s: %w", p.ID, err)
			}
			m.log.Warn("provider not routable", "provider", p.ID, "err", err)
			continue
		}
		if len(cs) > 0 {
			conns[p.ID] = cs
		}
	}

	for name, to := range m.opt.Route.Aliases {
		s.aliases[name] = aliasState{Target: to, Source: sourceConfig}
	}
	for _, a := range aliases {
		if _, dup := s.aliases[a.Name]; !dup {
			s.aliases[a.Name] = aliasState{Target: a.Target, Source: sourceStored, CreatedAt: a.CreatedAt}
		}
	}
	for _, c := range m.opt.Route.Combos {
		combo := store.Combo{Name: c.Name, Strategy: c.Strategy}
		if combo.Strategy == "" {
			combo.Strategy = router.StrategyPriority
		}
		for _, t := range c.Targets {
			target, err := parseTarget(t)
			if err != nil {
				return fmt.Errorf("route combo %s: %w", c.Name, err)
			}
			combo.Targets = append(combo.Targets, target)
		}
		if len(combo.Targets) == 0 || !router.ValidStrategy(combo.Strategy) {
			return fmt.Errorf("route combo %s: needs targets and a known strategy (%s)", c.Name, strings.Join(router.Strategies, ", "))
		}
		s.combos[c.Name] = comboState{Combo: combo, Source: sourceConfig}
	}
	for _, c := range combos {
		if _, dup := s.combos[c.Name]; !dup {
			s.combos[c.Name] = comboState{Combo: c, Source: sourceStored}
		}
	}
	s.mappings = mappings
	s.prices = newPriceTable(prices)
	s.models = s.modelList(conns)

	// Install: providers, aliases, combos, then mappings (which name combos).
	next := applied{providers: map[string]bool{}, aliases: map[string]bool{}, combos: map[string]bool{}}
	for id, cs := range conns {
		m.opt.Table.SetProvider(id, cs)
		next.providers[id] = true
	}
	for id := range m.applied.providers {
		if !next.providers[id] {
			m.opt.Table.SetProvider(id, nil)
		}
	}
	for name, a := range s.aliases {
		m.opt.Table.SetAlias(name, a.Target)
		next.aliases[name] = true
	}
	for name := range m.applied.aliases {
		if !next.aliases[name] {
			m.opt.Table.SetAlias(name, "")
		}
	}
	for name, c := range s.combos {
		if err := m.opt.Table.SetCombo(toRouterCombo(c.Combo)); err != nil {
			m.log.Warn("combo not routable", "combo", name, "err", err)
			continue
		}
		next.combos[name] = true
	}
	for name := range m.applied.combos {
		if !next.combos[name] {
			m.opt.Table.DeleteCombo(name)
		}
	}
	var rms []router.Mapping
	for _, mp := range mappings {
		if mp.Enabled {
			rms = append(rms, router.Mapping{Pattern: mp.Pattern, Combo: mp.Combo, Priority: mp.Priority})
		}
	}
	if err := m.opt.Table.SetMappings(rms); err != nil {
		m.log.Warn("mappings not routable", "err", err)
	}
	if m.opt.Pricing != nil {
		m.opt.Pricing.SetPricer(s.prices)
	}
	m.keys.set(keys)
	m.applied, m.epoch = next, epoch
	m.snap.Store(s)
	return nil
}

// connections builds one connection per enabled, readable credential of
// an enabled provider; a provider without credentials gets one keyless
// connection (local servers need none).
func (m *Manager) connections(p *providerState) ([]router.Connection, error) {
	if !p.Enabled {
		return nil, nil
	}
	creds := p.Credentials
	if len(creds) == 0 {
		creds = []store.Credential{{Enabled: true}}
	}
	var out []router.Connection
	prepare := provider.Preparer(p.Type, p.ParamRules)
	for _, c := range creds {
		if !c.Enabled {
			continue
		}
		if c.Unreadable {
			m.log.Warn("credential sealed with another master key skipped", "provider", p.ID, "credential", c.ID)
			continue
		}
		ad, err := m.adapter(p, c.APIKey)
		if err != nil {
			return nil, err
		}
		out = append(out, router.Connection{ID: connID(p.ID, len(out)), Adapter: ad, Prepare: prepare, Timeout: p.Timeout})
	}
	return out, nil
}

func (m *Manager) adapter(p *providerState, key string) (router.Adapter, error) {
	return m.opt.Registry.New(provider.Config{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, APIKey: key, Headers: p.Headers, HTTP: m.opt.HTTP})
}

// modelEntry is one model of a provider's list.
type modelEntry struct {
	Model  string
	Kind   string
	Hidden bool
	Source string // config (declared) or custom
}

// providerModels merges a provider's declared models with its custom ones.
func (s *snapshot) providerModels(p *providerState) []modelEntry {
	var out []modelEntry
	idx := map[string]int{}
	for _, mdl := range p.Models {
		if _, dup := idx[mdl]; dup {
			continue
		}
		idx[mdl] = len(out)
		out = append(out, modelEntry{Model: mdl, Kind: provider.KindOf(mdl), Source: p.Source})
	}
	for _, c := range s.custom {
		if c.Provider != p.ID {
			continue
		}
		if i, ok := idx[c.Model]; ok {
			out[i].Kind, out[i].Hidden = c.Kind, c.Hidden
			continue
		}
		idx[c.Model] = len(out)
		out = append(out, modelEntry{Model: c.Model, Kind: c.Kind, Hidden: c.Hidden, Source: "custom"})
	}
	return out
}

func (s *snapshot) modelList(conns map[string][]router.Connection) []ModelInfo {
	var out []ModelInfo
	for _, p := range s.providers {
		if len(conns[p.ID]) == 0 {
			continue
		}
		for _, e := range s.providerModels(p) {
			if !e.Hidden {
				out = append(out, ModelInfo{ID: p.ID + "/" + e.Model, OwnedBy: p.ID, Kind: e.Kind})
			}
		}
	}
	for name := range s.aliases {
		out = append(out, ModelInfo{ID: name, OwnedBy: "alias", Kind: "alias"})
	}
	for name := range s.combos {
		out = append(out, ModelInfo{ID: name, OwnedBy: "combo", Kind: "combo"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func toRouterCombo(c store.Combo) router.Combo {
	rc := router.Combo{Name: c.Name, Strategy: c.Strategy}
	for _, t := range c.Targets {
		rc.Targets = append(rc.Targets, router.Target{Provider: t.Provider, Model: t.Model, Weight: t.Weight})
	}
	return rc
}

// parseTarget reads "provider/model" or "provider/model*weight".
func parseTarget(s string) (store.Target, error) {
	weight := 0
	if i := strings.LastIndexByte(s, '*'); i > 0 {
		var w int
		if _, err := fmt.Sscanf(s[i+1:], "%d", &w); err != nil || w < 1 || fmt.Sprint(w) != s[i+1:] {
			return store.Target{}, fmt.Errorf("target %q: weight must be a positive integer", s)
		}
		s, weight = s[:i], w
	}
	p, mdl, ok := router.SplitModel(s)
	if !ok {
		return store.Target{}, fmt.Errorf("target %q is not provider/model", s)
	}
	return store.Target{Provider: p, Model: mdl, Weight: weight}, nil
}
