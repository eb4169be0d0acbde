package router

import (
	"fmt"
	"path"
	"sort"
	"sync"
)

// Combo is a named list of targets tried by a strategy.
type Combo struct {
	Name     string   `json:"name"`
	Strategy string   `json:"strategy"`
	Targets  []Target `json:"targets"`
}

// Mapping sends model names matching a glob pattern to a combo.
type Mapping struct {
	Pattern  string `json:"pattern"`
	Combo    string `json:"combo"`
	Priority int    `json:"priority"` // lower first
}

// Table is an in-memory Catalog. Readers see a consistent snapshot; the
// management layer replaces parts of it as configuration changes.
type Table struct {
	mu        sync.RWMutex
	providers map[string][]Connection
	aliases   map[string]string
	combos    map[string]Combo
	mappings  []Mapping
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{providers: map[string][]Connection{}, aliases: map[string]string{}, combos: map[string]Combo{}}
}

// SetProvider installs (or, with no connections, removes) a provider.
func (t *Table) SetProvider(id string, conns []Connection) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(conns) == 0 {
		delete(t.providers, id)
		return
	}
	t.providers[id] = append([]Connection(nil), conns...)
}

// SetAlias maps name to a model name ("" removes it).
func (t *Table) SetAlias(name, to string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if to == "" {
		delete(t.aliases, name)
		return
	}
	t.aliases[name] = to
}

// SetCombo installs or replaces a combo.
func (t *Table) SetCombo(c Combo) error {
	if c.Name == "" || len(c.Targets) == 0 {
		return fmt.Errorf("combo needs a name and at least one target")
	}
	if c.Strategy == "" {
		c.Strategy = StrategyPriority
	}
	if !ValidStrategy(c.Strategy) {
		return fmt.Errorf("unknown strategy %q", c.Strategy)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.combos[c.Name] = c
	return nil
}

// DeleteCombo removes a combo.
func (t *Table) DeleteCombo(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.combos, name)
}

// SetMappings replaces the glob mappings.
func (t *Table) SetMappings(ms []Mapping) error {
	for _, m := range ms {
		if _, err := path.Match(m.Pattern, ""); err != nil {
			return fmt.Errorf("bad pattern %q: %w", m.Pattern, err)
		}
	}
	ms = append([]Mapping(nil), ms...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Priority < ms[j].Priority })
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mappings = ms
	return nil
}

// Connections implements Catalog.
func (t *Table) Connections(provider string) []Connection {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.providers[provider]
}

// Resolve implements Catalog: aliases (up to 4 hops), then combo names,
// then "provider/model" for a configured provider, then the first glob
// mapping that matches.
func (t *Table) Resolve(model string) ([]Target, string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	name := model
	for i := 0; i < 4; i++ {
		to, ok := t.aliases[name]
		if !ok {
			break
		}
		name = to
	}
	if c, ok := t.combos[name]; ok {
		return append([]Target(nil), c.Targets...), c.Strategy, nil
	}
	if p, m, ok := SplitModel(name); ok {
		if _, known := t.providers[p]; known {
			return []Target{{Provider: p, Model: m}}, "", nil
		}
	}
	for _, mp := range t.mappings {
		if ok, _ := path.Match(mp.Pattern, name); ok {
			if c, ok := t.combos[mp.Combo]; ok {
				return append([]Target(nil), c.Targets...), c.Strategy, nil
			}
		}
	}
	return nil, "", fmt.Errorf("%w %q: use provider/model, an alias or a combo", ErrUnknownModel, model)
}
