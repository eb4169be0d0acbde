// Package pricing serves the price table under /api/pricing: the
// built-in list prices (per million tokens, and for the modalities beyond
// chat per their own unit: 1,000 rerank documents, a search unit …) and
// output limits of well-known models, the
// stored overrides (by model pattern), and the price one model resolves
// to. The table itself is the routing state's, which prices usage and
// budgets.
package pricing

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the pricing endpoints need from the route store.
type Store interface {
	SetPrice(ctx context.Context, p store.Price) error
	DeletePrice(ctx context.Context, pattern string) error
}

// State is the live routing state the endpoints read and reload.
type State interface {
	Snapshot() *routing.Snapshot
	Reload(ctx context.Context) error
}

// Service serves the pricing endpoints.
type Service struct {
	store Store
	guard *admin.Guard
	state State
}

// New builds the pricing endpoints over st (required), behind g,
// installing every change through state.
func New(st Store, g *admin.Guard, state State) *Service {
	return &Service{store: st, guard: g, state: state}
}

// Register adds the pricing routes to mux, behind the login.
func (s *Service) Register(mux admin.Mux) {
	guarded := s.guard.Guarded(mux)
	guarded("GET /api/pricing", s.getPricing)
	guarded("PUT /api/pricing", s.putPricing)
	guarded("POST /api/pricing", s.putPricing)
	guarded("DELETE /api/pricing", s.deletePricing)
}

type priceJSON struct {
	Pattern    string  `json:"pattern"`
	Input      float64 `json:"input"`
	Output     float64 `json:"output"`
	CacheRead  float64 `json:"cache_read"`
	CacheWrite float64 `json:"cache_write"`
	MaxOutput  int     `json:"max_output,omitempty"`
	// Unit and UnitPrice price a modality beyond chat in its own unit:
	// UnitPrice USD per UnitPer units (PerUnit names it).
	Unit      string  `json:"unit,omitempty"`
	UnitPrice float64 `json:"unit_price,omitempty"`
	UnitPer   int64   `json:"unit_per,omitempty"`
	Source    string  `json:"source"`
	Model     string  `json:"model,omitempty"`
}

func toPriceJSON(e routing.PriceEntry) priceJSON {
	return priceJSON{Pattern: e.Pattern, Input: e.Input, Output: e.Output, CacheRead: e.CacheRead, CacheWrite: e.CacheWrite,
		MaxOutput: e.MaxOutput, Unit: e.Unit, UnitPrice: e.UnitPrice, UnitPer: llm.Unit(e.Unit).Per(), Source: e.Source}
}

func (s *Service) getPricing(w http.ResponseWriter, r *http.Request) error {
	t := s.state.Snapshot().Prices
	if model := r.URL.Query().Get("model"); model != "" {
		p, mdl, ok := strings.Cut(model, "/")
		if !ok {
			p, mdl = "", model
		}
		m := t.Find(p, mdl)
		if !m.OK {
			return httpx.NotFound("no price known for model %q", model)
		}
		out := toPriceJSON(m.Entry)
		out.Model, out.MaxOutput = model, m.MaxOutput
		if out.MaxOutput == 0 {
			out.MaxOutput = routing.DefaultMaxOutput
		}
		httpx.WriteJSON(w, http.StatusOK, out)
		return nil
	}
	list := []priceJSON{}
	over := map[string]bool{}
	for _, e := range t.Overrides {
		over[e.Pattern] = true
		list = append(list, toPriceJSON(e))
	}
	for _, e := range t.Builtin {
		if !over[e.Pattern] {
			list = append(list, toPriceJSON(e))
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Pattern < list[j].Pattern })
	units := map[string]int64{}
	for _, u := range llm.Units() {
		units[string(u)] = u.Per()
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"pricing": list, "unit": "USD per 1M tokens",
		"units": units}) // unit_price is USD per units[unit] of the unit
	return nil
}

// unitNames lists the units a price may be given in.
func unitNames() string {
	var names []string
	for _, u := range llm.Units() {
		names = append(names, string(u))
	}
	return strings.Join(names, ", ")
}

type priceBody struct {
	Pattern    string   `json:"pattern"`
	Model      string   `json:"model"`
	Input      *float64 `json:"input"`
	Output     *float64 `json:"output"`
	CacheRead  *float64 `json:"cache_read"`
	CacheWrite *float64 `json:"cache_write"`
	MaxOutput  *int     `json:"max_output"`
	Unit       string   `json:"unit"`
	UnitPrice  *float64 `json:"unit_price"`
}

func (s *Service) putPricing(w http.ResponseWriter, r *http.Request) error {
	var b priceBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	pattern := b.Pattern
	if pattern == "" {
		pattern = b.Model
	}
	if err := admin.CheckPattern(pattern, "pattern"); err != nil {
		return err
	}
	if b.Unit != "" && llm.Unit(b.Unit).Per() == 0 {
		return httpx.BadRequest(`"unit" must be one of %s`, unitNames())
	}
	if (b.Unit == "") != (b.UnitPrice == nil) {
		return httpx.BadRequest(`"unit" and "unit_price" (USD per the unit's scale, GET /api/pricing "units") go together`)
	}
	if b.Unit != "" {
		// A model priced in a unit of its own may have no token prices.
		zero := 0.0
		if b.Input == nil {
			b.Input = &zero
		}
		if b.Output == nil {
			b.Output = &zero
		}
	}
	if b.Input == nil || b.Output == nil {
		return httpx.BadRequest(`"input" and "output" (USD per million tokens) are required`)
	}
	p := store.Price{Pattern: pattern, Input: *b.Input, Output: *b.Output, Unit: b.Unit}
	if b.UnitPrice != nil {
		p.UnitPrice = *b.UnitPrice
	}
	if b.CacheRead != nil {
		p.CacheRead = *b.CacheRead
	}
	if b.CacheWrite != nil {
		p.CacheWrite = *b.CacheWrite
	}
	if b.MaxOutput != nil {
		if *b.MaxOutput < 0 || *b.MaxOutput > 10_000_000 {
			return httpx.BadRequest(`"max_output" must be 0 (the built-in or default limit) to 10000000 tokens`)
		}
		p.MaxOutput = *b.MaxOutput
	}
	for name, v := range map[string]float64{"input": p.Input, "output": p.Output, "cache_read": p.CacheRead, "cache_write": p.CacheWrite} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e6 {
			return httpx.BadRequest("%q must be a price between 0 and 1000000 USD per million tokens", name)
		}
	}
	if v := p.UnitPrice; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e6 {
		return httpx.BadRequest(`"unit_price" must be a price between 0 and 1000000 USD`)
	}
	if err := s.store.SetPrice(r.Context(), p); err != nil {
		return admin.StoreError(err)
	}
	if err := s.state.Reload(r.Context()); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, toPriceJSON(routing.PriceEntry{Price: p, Source: "override"}))
	return nil
}

func (s *Service) deletePricing(w http.ResponseWriter, r *http.Request) error {
	pattern := r.PathValue("pattern")
	if pattern == "" {
		pattern = r.URL.Query().Get("pattern")
	}
	if pattern == "" {
		return httpx.BadRequest("name the override: DELETE /api/pricing?pattern=…")
	}
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, s.store.DeletePrice(r.Context(), pattern))
}
