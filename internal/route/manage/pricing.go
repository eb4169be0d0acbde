package manage

import (
	"math"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/store"
)

// builtinPrices are list prices of well-known models in USD per million
// tokens (input, output, cache read, cache write) and the most output
// tokens one answer may have (the providers' published limits; 0 where
// none is published), matched against the model name without its
// provider prefix. Overrides take precedence.
var builtinPrices = []store.Price{
	{Pattern: "gpt-4o", Input: 2.5, Output: 10, CacheRead: 1.25, MaxOutput: 16384},
	{Pattern: "gpt-4o-2024-*", Input: 2.5, Output: 10, CacheRead: 1.25, MaxOutput: 16384},
	{Pattern: "gpt-4o-mini*", Input: 0.15, Output: 0.6, CacheRead: 0.075, MaxOutput: 16384},
	{Pattern: "gpt-4.1", Input: 2, Output: 8, CacheRead: 0.5, MaxOutput: 32768},
	{Pattern: "gpt-4.1-mini*", Input: 0.4, Output: 1.6, CacheRead: 0.1, MaxOutput: 32768},
	{Pattern: "gpt-4.1-nano*", Input: 0.1, Output: 0.4, CacheRead: 0.025, MaxOutput: 32768},
	{Pattern: "gpt-5", Input: 1.25, Output: 10, CacheRead: 0.125, MaxOutput: 128000},
	{Pattern: "gpt-5-mini*", Input: 0.25, Output: 2, CacheRead: 0.025, MaxOutput: 128000},
	{Pattern: "gpt-5-nano*", Input: 0.05, Output: 0.4, CacheRead: 0.005, MaxOutput: 128000},
	{Pattern: "o3", Input: 2, Output: 8, CacheRead: 0.5, MaxOutput: 100000},
	{Pattern: "o3-mini*", Input: 1.1, Output: 4.4, CacheRead: 0.55, MaxOutput: 100000},
	{Pattern: "o4-mini*", Input: 1.1, Output: 4.4, CacheRead: 0.275, MaxOutput: 100000},
	{Pattern: "text-embedding-3-small", Input: 0.02},
	{Pattern: "text-embedding-3-large", Input: 0.13},
	{Pattern: "claude-opus-4*", Input: 15, Output: 75, CacheRead: 1.5, CacheWrite: 18.75, MaxOutput: 32000},
	{Pattern: "claude-opus-4-5*", Input: 5, Output: 25, CacheRead: 0.5, CacheWrite: 6.25, MaxOutput: 64000},
	{Pattern: "claude-sonnet-4*", Input: 3, Output: 15, CacheRead: 0.3, CacheWrite: 3.75, MaxOutput: 64000},
	{Pattern: "claude-3-7-sonnet*", Input: 3, Output: 15, CacheRead: 0.3, CacheWrite: 3.75, MaxOutput: 64000},
	{Pattern: "claude-haiku-4*", Input: 1, Output: 5, CacheRead: 0.1, CacheWrite: 1.25, MaxOutput: 64000},
	{Pattern: "claude-3-5-haiku*", Input: 0.8, Output: 4, CacheRead: 0.08, CacheWrite: 1, MaxOutput: 8192},
	{Pattern: "gemini-2.5-pro*", Input: 1.25, Output: 10, CacheRead: 0.31, MaxOutput: 65536},
	{Pattern: "gemini-2.5-flash", Input: 0.3, Output: 2.5, CacheRead: 0.075, MaxOutput: 65536},
	{Pattern: "gemini-2.5-flash-lite*", Input: 0.1, Output: 0.4, CacheRead: 0.025, MaxOutput: 65536},
	{Pattern: "gemini-2.0-flash*", Input: 0.1, Output: 0.4, CacheRead: 0.025, MaxOutput: 8192},
	{Pattern: "deepseek-chat", Input: 0.28, Output: 0.42, CacheRead: 0.028, MaxOutput: 8192},
	{Pattern: "deepseek-reasoner", Input: 0.28, Output: 0.42, CacheRead: 0.028, MaxOutput: 65536},
	{Pattern: "grok-4*", Input: 3, Output: 15, CacheRead: 0.75},
	{Pattern: "mistral-large*", Input: 2, Output: 6},
	{Pattern: "mistral-small*", Input: 0.1, Output: 0.3},
}

// DefaultMaxOutput is the output limit assumed for a model whose limit
// neither an override nor the built-in table gives: generous, since the
// budget reservation must cover what the model may write.
const DefaultMaxOutput = 32768

// priceEntry is a price with where it comes from.
type priceEntry struct {
	store.Price
	Source string // builtin or override
}

// priceTable resolves the price of a model: overrides before built-in
// prices; within each, patterns naming "provider/model" before those
// naming the bare model, an exact pattern before globs, and the longest
// glob first.
type priceTable struct {
	overrides, builtin []priceEntry

	// memo remembers lookups: every request prices its targets (budgets,
	// usage), and matching globs per request shows in profiles. A table
	// is never changed after it is built, so its answers stay right.
	memoMu sync.RWMutex
	memo   map[string]priceMemo // "provider\x00model" -> answer
}

type priceMemo struct {
	e         priceEntry
	ok        bool
	maxOutput int // 0: none known
}

// maxPriceMemo bounds the remembered lookups (model names come from
// clients).
const maxPriceMemo = 4096

func newPriceTable(overrides []store.Price) *priceTable {
	t := &priceTable{memo: map[string]priceMemo{}}
	for _, p := range overrides {
		t.overrides = append(t.overrides, priceEntry{p, "override"})
	}
	for _, p := range builtinPrices {
		t.builtin = append(t.builtin, priceEntry{p, "builtin"})
	}
	for _, l := range [][]priceEntry{t.overrides, t.builtin} {
		sort.SliceStable(l, func(i, j int) bool {
			gi, gj := isGlob(l[i].Pattern), isGlob(l[j].Pattern)
			if gi != gj {
				return !gi
			}
			return len(l[i].Pattern) > len(l[j].Pattern)
		})
	}
	return t
}

func isGlob(p string) bool { return strings.ContainsAny(p, "*?[\\") }

// lookup finds the entry for a "provider/model" id (or a bare model).
func (t *priceTable) lookup(providerID, model string) (priceEntry, bool) {
	m := t.find(providerID, model)
	return m.e, m.ok
}

// find is lookup with the model's output limit: that of the first
// matching entry that has one.
func (t *priceTable) find(providerID, model string) priceMemo {
	// The key is built on the stack: indexing a map with string(bytes)
	// does not allocate, so a remembered lookup costs no allocation.
	var buf [128]byte
	k := append(append(append(buf[:0], providerID...), 0), model...)
	t.memoMu.RLock()
	m, hit := t.memo[string(k)]
	t.memoMu.RUnlock()
	if hit {
		return m
	}
	m = t.match(providerID, model)
	t.memoMu.Lock()
	if len(t.memo) < maxPriceMemo {
		t.memo[string(k)] = m
	}
	t.memoMu.Unlock()
	return m
}

func (t *priceTable) match(providerID, model string) priceMemo {
	names := []string{model}
	if providerID != "" {
		names = []string{providerID + "/" + model, model}
	}
	var m priceMemo
	for _, l := range [][]priceEntry{t.overrides, t.builtin} {
		for _, n := range names { // provider-qualified patterns first
			for _, e := range l {
				if ok, _ := path.Match(e.Pattern, n); ok {
					if !m.ok {
						m.e, m.ok = e, true
					}
					if e.MaxOutput > 0 {
						m.maxOutput = e.MaxOutput
						return m
					}
				}
			}
		}
	}
	return m
}

// Price implements router.Pricer.
func (t *priceTable) Price(providerID, model string) (in, out float64, ok bool) {
	e, ok := t.lookup(providerID, model)
	return e.Input, e.Output, ok
}

// ---- HTTP ----

type priceJSON struct {
	Pattern    string  `json:"pattern"`
	Input      float64 `json:"input"`
	Output     float64 `json:"output"`
	CacheRead  float64 `json:"cache_read"`
	CacheWrite float64 `json:"cache_write"`
	MaxOutput  int     `json:"max_output,omitempty"`
	Source     string  `json:"source"`
	Model      string  `json:"model,omitempty"`
}

func toPriceJSON(e priceEntry) priceJSON {
	return priceJSON{Pattern: e.Pattern, Input: e.Input, Output: e.Output, CacheRead: e.CacheRead, CacheWrite: e.CacheWrite,
		MaxOutput: e.MaxOutput, Source: e.Source}
}

func (m *Manager) getPricing(w http.ResponseWriter, r *http.Request) error {
	t := m.snap.Load().prices
	if model := r.URL.Query().Get("model"); model != "" {
		p, mdl, ok := strings.Cut(model, "/")
		if !ok {
			p, mdl = "", model
		}
		m := t.find(p, mdl)
		if !m.ok {
			return httpx.NotFound("no price known for model %q", model)
		}
		out := toPriceJSON(m.e)
		out.Model, out.MaxOutput = model, m.maxOutput
		if out.MaxOutput == 0 {
			out.MaxOutput = DefaultMaxOutput
		}
		httpx.WriteJSON(w, http.StatusOK, out)
		return nil
	}
	list := []priceJSON{}
	over := map[string]bool{}
	for _, e := range t.overrides {
		over[e.Pattern] = true
		list = append(list, toPriceJSON(e))
	}
	for _, e := range t.builtin {
		if !over[e.Pattern] {
			list = append(list, toPriceJSON(e))
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Pattern < list[j].Pattern })
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"pricing": list, "unit": "USD per 1M tokens"})
	return nil
}

type priceBody struct {
	Pattern    string   `json:"pattern"`
	Model      string   `json:"model"`
	Input      *float64 `json:"input"`
	Output     *float64 `json:"output"`
	CacheRead  *float64 `json:"cache_read"`
	CacheWrite *float64 `json:"cache_write"`
	MaxOutput  *int     `json:"max_output"`
}

func (m *Manager) putPricing(w http.ResponseWriter, r *http.Request) error {
	var b priceBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	pattern := b.Pattern
	if pattern == "" {
		pattern = b.Model
	}
	if err := checkPattern(pattern, "pattern"); err != nil {
		return err
	}
	if b.Input == nil || b.Output == nil {
		return httpx.BadRequest(`"input" and "output" (USD per million tokens) are required`)
	}
	p := store.Price{Pattern: pattern, Input: *b.Input, Output: *b.Output}
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
	if err := m.store.SetPrice(r.Context(), p); err != nil {
		return storeError(err)
	}
	if err := m.reload(r.Context(), false); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, toPriceJSON(priceEntry{p, "override"}))
	return nil
}

func (m *Manager) deletePricing(w http.ResponseWriter, r *http.Request) error {
	pattern := r.PathValue("pattern")
	if pattern == "" {
		pattern = r.URL.Query().Get("pattern")
	}
	if pattern == "" {
		return httpx.BadRequest("name the override: DELETE /api/pricing?pattern=…")
	}
	return m.change(w, r, http.StatusNoContent, nil, m.store.DeletePrice(r.Context(), pattern))
}

// checkPattern validates a glob pattern (path.Match syntax).
func checkPattern(p, field string) error {
	if strings.TrimSpace(p) == "" {
		return httpx.BadRequest("%q is required", field)
	}
	if len(p) > 256 {
		return httpx.BadRequest("%q is longer than 256 characters", field)
	}
	if _, err := path.Match(p, ""); err != nil {
		return httpx.BadRequest("%q %q is not a valid glob pattern (use *, ? and [...])", field, p)
	}
	return nil
}

// Cost is the USD price of usage on a provider's model, from the current
// price table; ok is false when the model has no known price (cost 0).
// Cached reads and writes are priced separately when the table has a
// price for them, else as plain input.
func (m *Manager) Cost(providerID, model string, u llm.Usage) (usd float64, ok bool) {
	e, ok := m.snap.Load().prices.lookup(providerID, model)
	if !ok {
		return 0, false
	}
	return e.cost(u), true
}

// MaxOutput is the most output tokens a provider's model writes in one
// answer, from the price table (overrides, then built-in limits); known
// is false for models without one, which get DefaultMaxOutput.
func (m *Manager) MaxOutput(providerID, model string) (tokens int, known bool) {
	if n := m.snap.Load().prices.find(providerID, model).maxOutput; n > 0 {
		return n, true
	}
	return DefaultMaxOutput, false
}

// EstimateCost is the most a request may cost: its estimated input and
// maxOutput output tokens, for reserving budget before the call.
func (m *Manager) EstimateCost(providerID, model string, inputTokens, maxOutput int) (usd float64, ok bool) {
	return m.Cost(providerID, model, llm.Usage{InputTokens: inputTokens, OutputTokens: maxOutput})
}

func (e priceEntry) cost(u llm.Usage) float64 {
	read, write := e.CacheRead, e.CacheWrite
	if read == 0 {
		read = e.Input
	}
	if write == 0 {
		write = e.Input
	}
	return (float64(u.InputTokens)*e.Input + float64(u.OutputTokens)*e.Output +
		float64(u.CacheReadTokens)*read + float64(u.CacheWriteTokens)*write) / 1e6
}
