package routing

import (
	"path"
	"sort"
	"strings"
	"sync"

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
	// Rerank: Cohere bills search units (one query with up to 100
	// documents), $2.00 per 1,000; Voyage bills tokens (the query once
	// per document, plus the documents); Jina bills tokens.
	{Pattern: "rerank-v3.5", Unit: string(llm.UnitSearchUnit), UnitPrice: 0.002},
	{Pattern: "rerank-english-v3.0", Unit: string(llm.UnitSearchUnit), UnitPrice: 0.002},
	{Pattern: "rerank-multilingual-v3.0", Unit: string(llm.UnitSearchUnit), UnitPrice: 0.002},
	{Pattern: "rerank-2", Input: 0.05},
	{Pattern: "rerank-2-lite", Input: 0.02},
	{Pattern: "rerank-2.5", Input: 0.05},
	{Pattern: "rerank-2.5-lite", Input: 0.02},
	{Pattern: "jina-reranker-*", Input: 0.02},
	// OpenAI's moderation models are free of charge.
	{Pattern: "omni-moderation-*", Unit: string(llm.UnitModeration)},
	{Pattern: "text-moderation-*", Unit: string(llm.UnitModeration)},
	// OpenAI's list prices in the units their APIs bill: DALL·E per
	// standard 1024×1024 image, Whisper per second ($0.006 a minute),
	// TTS per million characters, Sora per second of video (720p).
	// Token-billed models (gpt-image-1, gpt-4o-transcribe, gpt-4o-mini-tts)
	// take their token prices from an override.
	{Pattern: "dall-e-3", Unit: string(llm.UnitImage), UnitPrice: 0.04},
	{Pattern: "dall-e-2", Unit: string(llm.UnitImage), UnitPrice: 0.02},
	{Pattern: "whisper-1", Unit: string(llm.UnitSecond), UnitPrice: 0.0001},
	{Pattern: "tts-1", Unit: string(llm.UnitCharacter), UnitPrice: 15},
	{Pattern: "tts-1-hd", Unit: string(llm.UnitCharacter), UnitPrice: 30},
	{Pattern: "sora-2", Unit: string(llm.UnitSecond), UnitPrice: 0.10},
	{Pattern: "sora-2-pro", Unit: string(llm.UnitSecond), UnitPrice: 0.30},
}

// DefaultMaxOutput is the output limit assumed for a model whose limit
// neither an override nor the built-in table gives: generous, since the
// budget reservation must cover what the model may write.
const DefaultMaxOutput = 32768

// PriceEntry is a price with where it comes from.
type PriceEntry struct {
	store.Price
	Source string // builtin or override
}

// PriceTable resolves the price of a model: overrides before built-in
// prices; within each, patterns naming "provider/model" before those
// naming the bare model, an exact pattern before globs, and the longest
// glob first.
type PriceTable struct {
	Overrides, Builtin []PriceEntry // each in the order they are matched

	// memo remembers lookups: every request prices its targets (budgets,
	// usage), and matching globs per request shows in profiles. A table
	// is never changed after it is built, so its answers stay right.
	memoMu sync.RWMutex
	memo   map[string]PriceMatch // "provider\x00model" -> answer
}

// PriceMatch is what a PriceTable knows of one model: the entry that
// prices it (OK false: none) and its output limit.
type PriceMatch struct {
	Entry     PriceEntry
	OK        bool
	MaxOutput int // 0: none known
}

// maxPriceMemo bounds the remembered lookups (model names come from
// clients).
const maxPriceMemo = 4096

// NewPriceTable builds the table of overrides and the built-in prices.
func NewPriceTable(overrides []store.Price) *PriceTable {
	t := &PriceTable{memo: map[string]PriceMatch{}}
	for _, p := range overrides {
		t.Overrides = append(t.Overrides, PriceEntry{p, "override"})
	}
	for _, p := range builtinPrices {
		t.Builtin = append(t.Builtin, PriceEntry{p, "builtin"})
	}
	for _, l := range [][]PriceEntry{t.Overrides, t.Builtin} {
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
func (t *PriceTable) lookup(providerID, model string) (PriceEntry, bool) {
	m := t.Find(providerID, model)
	return m.Entry, m.OK
}

// Find is lookup with the model's output limit: that of the first
// matching entry that has one.
func (t *PriceTable) Find(providerID, model string) PriceMatch {
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

func (t *PriceTable) match(providerID, model string) PriceMatch {
	names := []string{model}
	if providerID != "" {
		names = []string{providerID + "/" + model, model}
	}
	var m PriceMatch
	for _, l := range [][]PriceEntry{t.Overrides, t.Builtin} {
		for _, n := range names { // provider-qualified patterns first
			for _, e := range l {
				if ok, _ := path.Match(e.Pattern, n); ok {
					if !m.OK {
						m.Entry, m.OK = e, true
					}
					if e.MaxOutput > 0 {
						m.MaxOutput = e.MaxOutput
						return m
					}
				}
			}
		}
	}
	return m
}

// Price implements router.Pricer.
func (t *PriceTable) Price(providerID, model string) (in, out float64, ok bool) {
	e, ok := t.lookup(providerID, model)
	return e.Input, e.Output, ok
}

// Cost is the USD price of usage on a provider's model, from the current
// price table; ok is false when the model has no known price (cost 0).
// Cached reads and writes are priced separately when the table has a
// price for them, else as plain input.
func (st *State) Cost(providerID, model string, u llm.Usage) (usd float64, ok bool) {
	e, ok := st.snap.Load().Prices.lookup(providerID, model)
	if !ok {
		return 0, false
	}
	return e.cost(u), true
}

// MaxOutput is the most output tokens a provider's model writes in one
// answer, from the price table (overrides, then built-in limits); known
// is false for models without one, which get DefaultMaxOutput.
func (st *State) MaxOutput(providerID, model string) (tokens int, known bool) {
	if n := st.snap.Load().Prices.Find(providerID, model).MaxOutput; n > 0 {
		return n, true
	}
	return DefaultMaxOutput, false
}

// EstimateCost is the most a request may cost: its estimated input and
// maxOutput output tokens, for reserving budget before the call.
func (st *State) EstimateCost(providerID, model string, inputTokens, maxOutput int) (usd float64, ok bool) {
	return st.Cost(providerID, model, llm.Usage{InputTokens: inputTokens, OutputTokens: maxOutput})
}

// UnitCost is the USD price of an operation (rerank, moderation …) on a
// provider's model: its tokens at the model's token prices plus, when
// the model is priced in a unit of its own, the amount of that unit in
// units at the unit price. ok is false when the model has no known price,
// or is priced in a unit units does not have (cost 0).
func (st *State) UnitCost(providerID, model string, units []llm.Quantity, u llm.Usage) (usd float64, ok bool) {
	e, ok := st.snap.Load().Prices.lookup(providerID, model)
	if !ok {
		return 0, false
	}
	return e.unitCost(units, u)
}

// unitCost is UnitCost of one entry.
func (e PriceEntry) unitCost(units []llm.Quantity, u llm.Usage) (float64, bool) {
	usd := e.cost(u)
	if e.Unit == "" {
		return usd, true
	}
	n, ok := llm.Find(units, llm.Unit(e.Unit))
	if !ok {
		return usd, false
	}
	return usd + llm.Quantity{Unit: llm.Unit(e.Unit), N: n}.Cost(e.UnitPrice), true
}

func (e PriceEntry) cost(u llm.Usage) float64 {
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
