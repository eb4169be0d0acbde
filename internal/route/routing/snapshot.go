package routing

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
	SourceConfig = "config"
	SourceStored = "stored"
)

// Provider is a provider as the gateway runs it.
type Provider struct {
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

// Alias is an alias as the gateway runs it.
type Alias struct {
	Target, Source string
	CreatedAt      time.Time
}

// Combo is a combo as the gateway runs it.
type Combo struct {
	store.Combo
	Source string
}

// Snapshot is the state of the last reload; handlers read it without
// locks and never modify it.
type Snapshot struct {
	Providers []*Provider // by id
	ByID      map[string]*Provider
	Aliases   map[string]Alias
	Combos    map[string]Combo
	Mappings  []store.Mapping
	Custom    []store.ProviderModel
	Prices    *PriceTable
	models    []ModelInfo
	// kinds are the model kind of the providers whose type serves one
	// kind only (provider.Kinded), by provider id; defaults the model of
	// those whose type needs none (provider.DefaultModeled).
	kinds, defaults map[string]string
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
func (st *State) reload(ctx context.Context, strict bool) error {
	st.reloadMu.Lock()
	defer st.reloadMu.Unlock()

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
	if st.store != nil {
		// The epoch is read first: a change committed while loading makes
		// the next check reload again rather than being missed.
		var err error
		if epoch, err = st.store.Epoch(ctx); err != nil {
			return err
		}
		if stored, err = st.store.Providers(ctx); err != nil {
			return err
		}
		if aliases, err = st.store.Aliases(ctx); err != nil {
			return err
		}
		if combos, err = st.store.Combos(ctx); err != nil {
			return err
		}
		if mappings, err = st.store.Mappings(ctx); err != nil {
			return err
		}
		if custom, err = st.store.ProviderModels(ctx); err != nil {
			return err
		}
		if prices, err = st.store.Prices(ctx); err != nil {
			return err
		}
		if keys, err = st.store.APIKeys(ctx); err != nil {
			return err
		}
	}
	if st.opt.Proxies != nil {
		f, err := st.opt.Proxies.Clients(ctx)
		if err != nil {
			return err
		}
		st.clients.Store(&f)
	}

	s := &Snapshot{ByID: map[string]*Provider{}, Aliases: map[string]Alias{}, Combos: map[string]Combo{}, Custom: custom}
	for _, p := range st.opt.Route.Providers {
		ps := &Provider{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Models: p.Models, Enabled: true, Source: SourceConfig, Timeout: p.Timeout}
		for _, r := range p.ParamRules {
			ps.ParamRules = append(ps.ParamRules, provider.ParamRule{Type: p.Type, Model: r.Model, Drop: r.Drop, OneOf: r.OneOf})
		}
		if err := provider.ValidateParamRules(ps.ParamRules); err != nil {
			return fmt.Errorf("route provider %s: %w", p.ID, err)
		}
		for i, k := range p.APIKeys {
			ps.Credentials = append(ps.Credentials, store.Credential{ID: "config#" + fmt.Sprint(i+1), APIKey: k.Reveal(), Enabled: true})
		}
		s.ByID[p.ID] = ps
	}
	plain := false
	for _, p := range stored {
		plain = plain || p.PlainSecretHeaders
		if p.SecretHeadersUnreadable {
			st.log.Warn("secret headers sealed with another master key left out", "provider", p.ID)
		}
		if _, dup := s.ByID[p.ID]; dup {
			st.log.Warn("stored provider ignored: the configuration declares the same id", "provider", p.ID)
			continue
		}
		s.ByID[p.ID] = &Provider{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Models: p.Models, Enabled: p.Enabled,
			Source: SourceStored, Credentials: p.Credentials, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	}
	if plain {
		// Written before secret headers were sealed (or restored from
		// such a backup): seal them now.
		if n, err := st.store.SealHeaders(ctx); err != nil {
			st.log.Warn("sealing provider headers failed", "err", err)
		} else if n > 0 {
			st.log.Info("provider headers sealed at rest", "providers", n)
		}
	}
	for _, p := range s.ByID {
		s.Providers = append(s.Providers, p)
	}
	sort.Slice(s.Providers, func(i, j int) bool { return s.Providers[i].ID < s.Providers[j].ID })

	conns := map[string][]router.Connection{}
	for _, p := range s.Providers {
		cs, err := st.connections(p)
		if err != nil {
			if strict && p.Source == SourceConfig {
				return fmt.Errorf("route provider %s: %w", p.ID, err)
			}
			st.log.Warn("provider not routable", "provider", p.ID, "err", err)
			continue
		}
		if len(cs) > 0 {
			conns[p.ID] = cs
		}
	}

	for name, to := range st.opt.Route.Aliases {
		s.Aliases[name] = Alias{Target: to, Source: SourceConfig}
	}
	for _, a := range aliases {
		if _, dup := s.Aliases[a.Name]; !dup {
			s.Aliases[a.Name] = Alias{Target: a.Target, Source: SourceStored, CreatedAt: a.CreatedAt}
		}
	}
	for _, c := range st.opt.Route.Combos {
		combo := store.Combo{Name: c.Name, Strategy: c.Strategy}
		if combo.Strategy == "" {
			combo.Strategy = router.StrategyPriority
		}
		for _, t := range c.Targets {
			target, err := ParseTarget(t)
			if err != nil {
				return fmt.Errorf("route combo %s: %w", c.Name, err)
			}
			combo.Targets = append(combo.Targets, target)
		}
		if len(combo.Targets) == 0 || !router.ValidStrategy(combo.Strategy) {
			return fmt.Errorf("route combo %s: needs targets and a known strategy (%s)", c.Name, strings.Join(router.Strategies, ", "))
		}
		s.Combos[c.Name] = Combo{Combo: combo, Source: SourceConfig}
	}
	for _, c := range combos {
		if _, dup := s.Combos[c.Name]; !dup {
			s.Combos[c.Name] = Combo{Combo: c, Source: SourceStored}
		}
	}
	s.Mappings = mappings
	s.Prices = NewPriceTable(prices)
	s.kinds, s.defaults = map[string]string{}, map[string]string{}
	for id, cs := range conns {
		if len(cs) == 0 {
			continue
		}
		if k, ok := cs[0].Adapter.(provider.Kinded); ok {
			s.kinds[id] = k.ModelKind()
		}
		if d, ok := cs[0].Adapter.(provider.DefaultModeled); ok {
			s.defaults[id] = d.DefaultModel()
		}
	}
	s.models = s.modelList(conns)

	// Install: providers, aliases, combos, then mappings (which name combos).
	next := applied{providers: map[string]bool{}, aliases: map[string]bool{}, combos: map[string]bool{}}
	for id, cs := range conns {
		st.opt.Table.SetProvider(id, cs)
		next.providers[id] = true
	}
	for id := range st.applied.providers {
		if !next.providers[id] {
			st.opt.Table.SetProvider(id, nil)
		}
	}
	for name, a := range s.Aliases {
		st.opt.Table.SetAlias(name, a.Target)
		next.aliases[name] = true
	}
	for name := range st.applied.aliases {
		if !next.aliases[name] {
			st.opt.Table.SetAlias(name, "")
		}
	}
	for name, c := range s.Combos {
		if err := st.opt.Table.SetCombo(toRouterCombo(c.Combo)); err != nil {
			st.log.Warn("combo not routable", "combo", name, "err", err)
			continue
		}
		next.combos[name] = true
	}
	for name := range st.applied.combos {
		if !next.combos[name] {
			st.opt.Table.DeleteCombo(name)
		}
	}
	var rms []router.Mapping
	for _, mp := range mappings {
		if mp.Enabled {
			rms = append(rms, router.Mapping{Pattern: mp.Pattern, Combo: mp.Combo, Priority: mp.Priority})
		}
	}
	if err := st.opt.Table.SetMappings(rms); err != nil {
		st.log.Warn("mappings not routable", "err", err)
	}
	if st.opt.Pricing != nil {
		st.opt.Pricing.SetPricer(s.Prices)
	}
	st.keys.set(keys)
	st.applied, st.epoch = next, epoch
	st.snap.Store(s)
	return nil
}

// connections builds one connection per enabled, readable credential of
// an enabled provider; a provider without credentials gets one keyless
// connection (local servers need none).
func (st *State) connections(p *Provider) ([]router.Connection, error) {
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
			st.log.Warn("credential sealed with another master key skipped", "provider", p.ID, "credential", c.ID)
			continue
		}
		ad, err := st.adapter(p, c.ID, c.APIKey)
		if err != nil {
			return nil, err
		}
		out = append(out, router.Connection{ID: connID(p.ID, len(out)), Adapter: ad, Prepare: prepare, Timeout: p.Timeout})
	}
	return out, nil
}

// ModelEntry is one model of a provider's list.
type ModelEntry struct {
	Model  string
	Kind   string
	Hidden bool
	Source string // config (declared) or custom
}

// ProviderModels merges a provider's declared models with its custom ones.
func (s *Snapshot) ProviderModels(p *Provider) []ModelEntry {
	var out []ModelEntry
	idx := map[string]int{}
	for _, mdl := range p.Models {
		if _, dup := idx[mdl]; dup {
			continue
		}
		idx[mdl] = len(out)
		kind := s.kinds[p.ID]
		if kind == "" {
			kind = provider.KindOf(mdl)
		}
		out = append(out, ModelEntry{Model: mdl, Kind: kind, Source: p.Source})
	}
	for _, c := range s.Custom {
		if c.Provider != p.ID {
			continue
		}
		if i, ok := idx[c.Model]; ok {
			out[i].Kind, out[i].Hidden = c.Kind, c.Hidden
			continue
		}
		idx[c.Model] = len(out)
		out = append(out, ModelEntry{Model: c.Model, Kind: c.Kind, Hidden: c.Hidden, Source: "custom"})
	}
	if d := s.defaults[p.ID]; len(out) == 0 && d != "" {
		kind := s.kinds[p.ID]
		if kind == "" {
			kind = provider.KindOf(d)
		}
		out = append(out, ModelEntry{Model: d, Kind: kind, Source: p.Source})
	}
	return out
}

func (s *Snapshot) modelList(conns map[string][]router.Connection) []ModelInfo {
	var out []ModelInfo
	for _, p := range s.Providers {
		if len(conns[p.ID]) == 0 {
			continue
		}
		for _, e := range s.ProviderModels(p) {
			if !e.Hidden {
				out = append(out, ModelInfo{ID: p.ID + "/" + e.Model, OwnedBy: p.ID, Kind: e.Kind})
			}
		}
	}
	for name := range s.Aliases {
		out = append(out, ModelInfo{ID: name, OwnedBy: "alias", Kind: "alias"})
	}
	for name := range s.Combos {
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

// ParseTarget reads "provider/model" or "provider/model*weight".
func ParseTarget(s string) (store.Target, error) {
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
