// Package models serves how model names resolve: aliases
// (/api/models/alias), combos with their strategy and targets
// (/api/combos), model→combo mappings (/api/model-combo-mappings) and the
// catalog of every provider's models, aliases and combos
// (/api/models/catalog). Config-declared aliases and combos are
// read-only; every change is installed at once through the routing
// state.
package models

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the model-name endpoints need from the route store.
type Store interface {
	SetAlias(ctx context.Context, a store.Alias) (bool, error)
	DeleteAlias(ctx context.Context, name string) error
	Combo(ctx context.Context, name string) (store.Combo, error)
	CreateCombo(ctx context.Context, c store.Combo) error
	UpdateCombo(ctx context.Context, c store.Combo) error
	DeleteCombo(ctx context.Context, name string) error
	Mapping(ctx context.Context, id string) (store.Mapping, error)
	CreateMapping(ctx context.Context, m store.Mapping) (store.Mapping, error)
	UpdateMapping(ctx context.Context, m store.Mapping) error
	DeleteMapping(ctx context.Context, id string) error
}

// State is the live routing state the endpoints read and reload.
type State interface {
	Snapshot() *routing.Snapshot
	Reload(ctx context.Context) error
}

// Service serves the model-name endpoints.
type Service struct {
	store Store
	guard *admin.Guard
	state State

	types    []string       // provider types this build can build
	services []KnownService // well-known services a provider can be added for
}

// KnownService is a well-known upstream a provider can be added for by
// its id alone (its type fills in the base URL).
type KnownService struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	BaseURL string `json:"baseUrl"`
}

// WithCatalog sets what the catalog lists besides the configured
// providers: the provider types this build can build and the known
// services (route/provider's registry and catalog, handed in by the
// assembly).
func (s *Service) WithCatalog(types []string, services []KnownService) *Service {
	s.types, s.services = types, services
	return s
}

// New builds the model-name endpoints over st (required), behind g,
// installing every change through state.
func New(st Store, g *admin.Guard, state State) *Service {
	return &Service{store: st, guard: g, state: state}
}

// Register adds the alias, combo, mapping and catalog routes to mux,
// behind the login.
func (s *Service) Register(mux admin.Mux) {
	guarded := s.guard.Guarded(mux)
	guarded("GET /api/models/alias", s.listAliases)
	guarded("POST /api/models/alias", s.setAlias)
	guarded("PUT /api/models/alias", s.setAlias)
	guarded("DELETE /api/models/alias", s.deleteAlias)
	guarded("DELETE /api/models/alias/{name...}", s.deleteAlias)
	guarded("GET /api/models/catalog", s.catalog)

	guarded("GET /api/combos", s.listCombos)
	guarded("POST /api/combos", s.createCombo)
	guarded("GET /api/combos/{name}", s.getCombo)
	guarded("PUT /api/combos/{name}", s.updateCombo)
	guarded("DELETE /api/combos/{name}", s.deleteCombo)

	guarded("GET /api/model-combo-mappings", s.listMappings)
	guarded("POST /api/model-combo-mappings", s.createMapping)
	guarded("GET /api/model-combo-mappings/{id}", s.getMapping)
	guarded("PUT /api/model-combo-mappings/{id}", s.updateMapping)
	guarded("DELETE /api/model-combo-mappings/{id}", s.deleteMapping)
}

// checkName validates an alias or combo name.
func checkName(name, field string) error {
	if name == "" {
		return httpx.BadRequest("%q is required", field)
	}
	if len(name) > 200 || strings.ContainsAny(name, " \t\r\n*?[]") {
		return httpx.BadRequest("%q %q must be at most 200 characters without spaces or glob characters", field, name)
	}
	return nil
}

// ---- aliases ----

type aliasJSON struct {
	Name      string     `json:"name"`
	Target    string     `json:"target"`
	Source    string     `json:"source"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	Resolved  *resolved  `json:"resolved,omitempty"`
}

// resolved is what a name leads to now, as the router resolves it: the
// targets in the order they are tried and the combo's strategy, or why it
// leads nowhere.
type resolved struct {
	Targets  []router.Target `json:"targets"`
	Strategy string          `json:"strategy,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// resolver is the part of the routing state that resolves names (the
// live table); a state without it lists no resolved targets.
type resolver interface {
	Resolve(model string) ([]router.Target, string, error)
}

// resolve resolves name through the live table, nil without one.
func (s *Service) resolve(name string) *resolved {
	r, ok := s.state.(resolver)
	if !ok {
		return nil
	}
	ts, strategy, err := r.Resolve(name)
	out := &resolved{Targets: ts, Strategy: strategy}
	if out.Targets == nil {
		out.Targets = []router.Target{}
	}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

func (s *Service) listAliases(w http.ResponseWriter, r *http.Request) error {
	snap := s.state.Snapshot()
	out := []aliasJSON{}
	for name, a := range snap.Aliases {
		j := aliasJSON{Name: name, Target: a.Target, Source: a.Source, Resolved: s.resolve(name)}
		if !a.CreatedAt.IsZero() {
			c := a.CreatedAt
			j.CreatedAt = &c
		}
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"aliases": out})
	return nil
}

func (s *Service) setAlias(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Name   string `json:"name"`
		Alias  string `json:"alias"`
		Target string `json:"target"`
		Model  string `json:"model"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.Name == "" {
		b.Name = b.Alias
	}
	if b.Target == "" {
		b.Target = b.Model
	}
	if err := checkName(b.Name, "name"); err != nil {
		return err
	}
	if b.Target == "" || len(b.Target) > 400 || strings.ContainsAny(b.Target, " \t\r\n") {
		return httpx.BadRequest(`"target" (the model name the alias leads to) is required, without spaces`)
	}
	if b.Target == b.Name {
		return httpx.BadRequest("an alias cannot lead to itself")
	}
	snap := s.state.Snapshot()
	if a, ok := snap.Aliases[b.Name]; ok && a.Source == routing.SourceConfig {
		return admin.ReadOnly("alias " + b.Name)
	}
	if _, ok := snap.Combos[b.Name]; ok {
		return httpx.Conflict("a combo is named %q; an alias would hide it", b.Name)
	}
	created, err := s.store.SetAlias(r.Context(), store.Alias{Name: b.Name, Target: b.Target})
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return admin.Change(w, r, s.state, status, func() any {
		return aliasJSON{Name: b.Name, Target: b.Target, Source: routing.SourceStored}
	}, err)
}

func (s *Service) deleteAlias(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if name == "" {
		name = r.URL.Query().Get("name")
	}
	if name == "" {
		name = r.URL.Query().Get("alias")
	}
	if name == "" {
		return httpx.BadRequest("name the alias: DELETE /api/models/alias/{name}")
	}
	if a, ok := s.state.Snapshot().Aliases[name]; ok && a.Source == routing.SourceConfig {
		return admin.ReadOnly("alias " + name)
	}
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, s.store.DeleteAlias(r.Context(), name))
}

// ---- combos ----

// targetInput is one combo target: "provider/model", "provider/model*2",
// or {"provider","model","weight"} / {"model":"provider/model","weight"}.
type targetInput struct{ t store.Target }

func (ti *targetInput) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		t, err := routing.ParseTarget(s)
		ti.t = t
		return err
	}
	var o struct {
		Provider string `json:"provider"`
		Model    string `json:"model"`
		Weight   int    `json:"weight"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return errors.New(`a target is "provider/model" or {"provider","model","weight"}`)
	}
	if o.Provider == "" {
		p, mdl, ok := router.SplitModel(o.Model)
		if !ok {
			return errors.New(`target model ` + o.Model + ` is not provider/model`)
		}
		o.Provider, o.Model = p, mdl
	}
	if o.Model == "" || o.Weight < 0 {
		return errors.New(`a target needs a model and a weight >= 0`)
	}
	ti.t = store.Target{Provider: o.Provider, Model: o.Model, Weight: o.Weight}
	return nil
}

type comboBody struct {
	Name     string         `json:"name"`
	Strategy string         `json:"strategy"`
	Targets  *[]targetInput `json:"targets"`
	Models   *[]targetInput `json:"models"`
}

// decodeCombo decodes a combo body; target errors are 400s naming the
// problem.
func decodeCombo(w http.ResponseWriter, r *http.Request) (comboBody, error) {
	var b comboBody
	body, err := httpx.ReadBody(w, r, admin.MaxBody)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(body, &b); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		if errors.As(err, &syn) || errors.As(err, &typ) || len(strings.TrimSpace(string(body))) == 0 {
			return b, httpx.DecodeJSONBytes(body, &b, r.Header.Get("Content-Type"))
		}
		return b, httpx.BadRequest("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if b.Targets == nil {
		b.Targets = b.Models
	}
	return b, nil
}

// comboFrom validates strategy and targets against the current providers.
func (s *Service) comboFrom(name string, b comboBody, cur store.Combo) (store.Combo, error) {
	c := cur
	c.Name = name
	if b.Strategy != "" {
		c.Strategy = b.Strategy
	}
	if c.Strategy == "" {
		c.Strategy = router.StrategyPriority
	}
	if !router.ValidStrategy(c.Strategy) {
		return c, httpx.BadRequest("unknown strategy %q (use one of %s)", c.Strategy, strings.Join(router.Strategies, ", "))
	}
	if b.Targets != nil {
		c.Targets = nil
		for _, t := range *b.Targets {
			c.Targets = append(c.Targets, t.t)
		}
	}
	if len(c.Targets) == 0 {
		return c, httpx.BadRequest(`"targets" needs at least one "provider/model"`)
	}
	if len(c.Targets) > 100 {
		return c, httpx.BadRequest("at most 100 targets per combo")
	}
	snap := s.state.Snapshot()
	for _, t := range c.Targets {
		if snap.ByID[t.Provider] == nil {
			return c, httpx.BadRequest("target %s/%s names unknown provider %q", t.Provider, t.Model, t.Provider)
		}
	}
	return c, nil
}

type comboJSON struct {
	Name      string         `json:"name"`
	Strategy  string         `json:"strategy"`
	Targets   []store.Target `json:"targets"`
	Source    string         `json:"source"`
	CreatedAt *time.Time     `json:"created_at,omitempty"`
	UpdatedAt *time.Time     `json:"updated_at,omitempty"`
	Resolved  *resolved      `json:"resolved,omitempty"`
}

func toComboJSON(c store.Combo, source string) comboJSON {
	out := comboJSON{Name: c.Name, Strategy: c.Strategy, Targets: c.Targets, Source: source}
	if out.Targets == nil {
		out.Targets = []store.Target{}
	}
	if !c.CreatedAt.IsZero() {
		cr, up := c.CreatedAt, c.UpdatedAt
		out.CreatedAt, out.UpdatedAt = &cr, &up
	}
	return out
}

func (s *Service) listCombos(w http.ResponseWriter, r *http.Request) error {
	snap := s.state.Snapshot()
	out := []comboJSON{}
	for _, c := range snap.Combos {
		j := toComboJSON(c.Combo, c.Source)
		j.Resolved = s.resolve(c.Name)
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"combos": out, "strategies": router.Strategies})
	return nil
}

func (s *Service) getCombo(w http.ResponseWriter, r *http.Request) error {
	c, ok := s.state.Snapshot().Combos[r.PathValue("name")]
	if !ok {
		return httpx.NotFound("combo %q not found", r.PathValue("name"))
	}
	httpx.WriteJSON(w, http.StatusOK, toComboJSON(c.Combo, c.Source))
	return nil
}

func (s *Service) createCombo(w http.ResponseWriter, r *http.Request) error {
	b, err := decodeCombo(w, r)
	if err != nil {
		return err
	}
	if err := checkName(b.Name, "name"); err != nil {
		return err
	}
	if strings.Contains(b.Name, "/") {
		return httpx.BadRequest(`a combo name cannot contain "/" (it would read as provider/model)`)
	}
	snap := s.state.Snapshot()
	if c, ok := snap.Combos[b.Name]; ok {
		if c.Source == routing.SourceConfig {
			return httpx.Conflict("combo %q is declared in the configuration file", b.Name)
		}
		return httpx.Conflict("combo %q already exists; PUT /api/combos/%s changes it", b.Name, b.Name)
	}
	if _, ok := snap.Aliases[b.Name]; ok {
		return httpx.Conflict("an alias is named %q and would hide the combo", b.Name)
	}
	c, err := s.comboFrom(b.Name, b, store.Combo{})
	if err != nil {
		return err
	}
	if err := s.store.CreateCombo(r.Context(), c); err != nil {
		return admin.StoreError(err)
	}
	if err := s.state.Reload(r.Context()); err != nil {
		return err
	}
	return s.writeCombo(w, c.Name, http.StatusCreated)
}

func (s *Service) writeCombo(w http.ResponseWriter, name string, status int) error {
	c, ok := s.state.Snapshot().Combos[name]
	if !ok {
		return httpx.NotFound("combo %q not found", name)
	}
	httpx.WriteJSON(w, status, toComboJSON(c.Combo, c.Source))
	return nil
}

func (s *Service) updateCombo(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if c, ok := s.state.Snapshot().Combos[name]; ok && c.Source == routing.SourceConfig {
		return admin.ReadOnly("combo " + name)
	}
	cur, err := s.store.Combo(r.Context(), name)
	if err != nil {
		return admin.StoreError(err)
	}
	b, err := decodeCombo(w, r)
	if err != nil {
		return err
	}
	if b.Name != "" && b.Name != name {
		return httpx.BadRequest("a combo's name cannot change (%q in the body, %q in the path)", b.Name, name)
	}
	c, err := s.comboFrom(name, b, cur)
	if err != nil {
		return err
	}
	if err := s.store.UpdateCombo(r.Context(), c); err != nil {
		return admin.StoreError(err)
	}
	if err := s.state.Reload(r.Context()); err != nil {
		return err
	}
	return s.writeCombo(w, name, http.StatusOK)
}

func (s *Service) deleteCombo(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	snap := s.state.Snapshot()
	if c, ok := snap.Combos[name]; ok && c.Source == routing.SourceConfig {
		return admin.ReadOnly("combo " + name)
	}
	var users []string
	for _, mp := range snap.Mappings {
		if mp.Combo == name {
			users = append(users, mp.ID+" ("+mp.Pattern+")")
		}
	}
	if len(users) > 0 {
		return httpx.Conflict("combo %q is used by mappings %s; delete or change them first", name, strings.Join(users, ", "))
	}
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, s.store.DeleteCombo(r.Context(), name))
}

// ---- model → combo mappings ----

type mappingJSON struct {
	ID          string    `json:"id"`
	Pattern     string    `json:"pattern"`
	Combo       string    `json:"combo"`
	Priority    int       `json:"priority"`
	Enabled     bool      `json:"enabled"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Resolved    *resolved `json:"resolved,omitempty"`
}

func toMappingJSON(mp store.Mapping) mappingJSON {
	return mappingJSON{ID: mp.ID, Pattern: mp.Pattern, Combo: mp.Combo, Priority: mp.Priority, Enabled: mp.Enabled, Description: mp.Description, CreatedAt: mp.CreatedAt}
}

type mappingBody struct {
	Pattern     *string `json:"pattern"`
	Combo       *string `json:"combo"`
	ComboID     *string `json:"comboId"`
	Priority    *int    `json:"priority"`
	Enabled     *bool   `json:"enabled"`
	Description *string `json:"description"`
}

func (s *Service) applyMapping(b mappingBody, mp *store.Mapping) error {
	if b.Combo == nil {
		b.Combo = b.ComboID
	}
	if b.Pattern != nil {
		mp.Pattern = strings.TrimSpace(*b.Pattern)
	}
	if b.Combo != nil {
		mp.Combo = *b.Combo
	}
	if b.Priority != nil {
		mp.Priority = *b.Priority
	}
	if b.Enabled != nil {
		mp.Enabled = *b.Enabled
	}
	if b.Description != nil {
		mp.Description = *b.Description
	}
	if err := admin.CheckPattern(mp.Pattern, "pattern"); err != nil {
		return err
	}
	if mp.Combo == "" {
		return httpx.BadRequest(`"combo" is required`)
	}
	if _, ok := s.state.Snapshot().Combos[mp.Combo]; !ok {
		return httpx.BadRequest("combo %q does not exist", mp.Combo)
	}
	if len(mp.Description) > 500 {
		return httpx.BadRequest(`"description" is longer than 500 characters`)
	}
	return nil
}

func (s *Service) listMappings(w http.ResponseWriter, r *http.Request) error {
	out := []mappingJSON{}
	for _, mp := range s.state.Snapshot().Mappings {
		j := toMappingJSON(mp)
		j.Resolved = s.resolve(mp.Combo) // a matching name leads to the combo's targets
		out = append(out, j)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"mappings": out})
	return nil
}

func (s *Service) getMapping(w http.ResponseWriter, r *http.Request) error {
	mp, err := s.store.Mapping(r.Context(), r.PathValue("id"))
	if err != nil {
		return admin.StoreError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, toMappingJSON(mp))
	return nil
}

func (s *Service) createMapping(w http.ResponseWriter, r *http.Request) error {
	var b mappingBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	mp := store.Mapping{Enabled: true}
	if err := s.applyMapping(b, &mp); err != nil {
		return err
	}
	mp, err := s.store.CreateMapping(r.Context(), mp)
	return admin.Change(w, r, s.state, http.StatusCreated, func() any { return toMappingJSON(mp) }, err)
}

func (s *Service) updateMapping(w http.ResponseWriter, r *http.Request) error {
	mp, err := s.store.Mapping(r.Context(), r.PathValue("id"))
	if err != nil {
		return admin.StoreError(err)
	}
	var b mappingBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if err := s.applyMapping(b, &mp); err != nil {
		return err
	}
	return admin.Change(w, r, s.state, http.StatusOK, func() any { return toMappingJSON(mp) }, s.store.UpdateMapping(r.Context(), mp))
}

func (s *Service) deleteMapping(w http.ResponseWriter, r *http.Request) error {
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, s.store.DeleteMapping(r.Context(), r.PathValue("id")))
}

// ---- catalog ----

func (s *Service) catalog(w http.ResponseWriter, r *http.Request) error {
	snap := s.state.Snapshot()
	type catModel struct {
		ID     string `json:"id"`
		Model  string `json:"model"`
		Kind   string `json:"kind"`
		Hidden bool   `json:"hidden"`
		Source string `json:"source"`
	}
	type catProvider struct {
		ID      string     `json:"id"`
		Type    string     `json:"type"`
		Source  string     `json:"source"`
		Enabled bool       `json:"enabled"`
		Models  []catModel `json:"models"`
	}
	out := struct {
		Providers     []catProvider  `json:"providers"`
		Aliases       []aliasJSON    `json:"aliases"`
		Combos        []comboJSON    `json:"combos"`
		ProviderTypes []string       `json:"providerTypes"`
		Services      []KnownService `json:"services"`
	}{Providers: []catProvider{}, Aliases: []aliasJSON{}, Combos: []comboJSON{},
		ProviderTypes: append([]string{}, s.types...), Services: append([]KnownService{}, s.services...)}
	for _, p := range snap.Providers {
		cp := catProvider{ID: p.ID, Type: p.Type, Source: p.Source, Enabled: p.Enabled, Models: []catModel{}}
		for _, e := range snap.ProviderModels(p) {
			cp.Models = append(cp.Models, catModel{ID: p.ID + "/" + e.Model, Model: e.Model, Kind: e.Kind, Hidden: e.Hidden, Source: e.Source})
		}
		out.Providers = append(out.Providers, cp)
	}
	for name, a := range snap.Aliases {
		out.Aliases = append(out.Aliases, aliasJSON{Name: name, Target: a.Target, Source: a.Source, Resolved: s.resolve(name)})
	}
	sort.Slice(out.Aliases, func(i, j int) bool { return out.Aliases[i].Name < out.Aliases[j].Name })
	for _, c := range snap.Combos {
		j := toComboJSON(c.Combo, c.Source)
		j.Resolved = s.resolve(c.Name)
		out.Combos = append(out.Combos, j)
	}
	sort.Slice(out.Combos, func(i, j int) bool { return out.Combos[i].Name < out.Combos[j].Name })
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
