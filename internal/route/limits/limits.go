// Package limits owns the per-key policy of the OmniRoute gateway: allowed
// models and providers, request and token rate limits (RPM, RPD, TPM, TPD)
// and USD budgets (hourly, daily, weekly, monthly). Gate is the pipeline.Gate
// that enforces them on every routed chat request, reserving requests,
// estimated tokens and estimated cost atomically before the upstream call
// and settling them from the real usage after it; counters live in memory
// (one replica) or in Redis (shared by replicas), and settled spend is
// persisted to the route store so budgets survive restarts. It also serves
// the budget management endpoints (/api/usage/budget).
package limits

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// Keys gives the current stored gateway keys by id (in memory).
type Keys interface {
	Key(id string) (store.APIKey, bool)
}

// Pricer prices usage in USD and knows how much a model may write.
type Pricer interface {
	Cost(provider, model string, u llm.Usage) (float64, bool)
	EstimateCost(provider, model string, inputTokens, maxOutput int) (float64, bool)
	// MaxOutput is the most output tokens the model writes in one
	// answer; known is false when that is a default.
	MaxOutput(provider, model string) (tokens int, known bool)
	// UnitCost prices an operation beyond chat (rerank, moderation …):
	// its tokens, and its units at the model's price in its own unit.
	UnitCost(provider, model string, units []llm.Quantity, u llm.Usage) (float64, bool)
}

// Resolver lists the targets a model name may be routed to.
type Resolver interface {
	Resolve(model string) ([]router.Target, string, error)
}

// Store persists budgets and settled spend.
type Store interface {
	APIKeys(ctx context.Context) ([]store.APIKey, error)
	SetBudget(ctx context.Context, b store.Budget) error
	AddSpend(ctx context.Context, spends []store.Spend) error
	Spends(ctx context.Context, since time.Time) ([]store.Spend, error)
}

// Options configure a Gate.
type Options struct {
	Keys     Keys
	Pricer   Pricer
	Resolver Resolver
	Store    Store                           // nil: spend is not persisted
	Counters Counters                        // nil: in memory
	Refresh  func(ctx context.Context) error // reloads Keys after a budget change (optional)
	// FlushInterval is how often settled spend is written to the store
	// (default 5s).
	FlushInterval time.Duration
	Clock         clock.Clock
	Log           *slog.Logger
	// Events hears budget.warning (a budget's spend crossed its warning
	// threshold) and budget.exceeded (a call was refused by a budget),
	// each once per key, period and window in this process (nil: none).
	Events events.Publisher
}

// Gate enforces key policies, limits and budgets.
type Gate struct {
	opt Options
	clk clock.Clock
	log *slog.Logger
	c   Counters

	mu       sync.Mutex
	pending  map[spendKey]int64  // settled spend not yet persisted
	notified map[string]struct{} // budget events published (bounded)
}

type spendKey struct {
	key, period string
	start       time.Time
}

var _ pipeline.Gate = (*Gate)(nil)

// New returns a gate.
func New(opt Options) *Gate {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 5 * time.Second
	}
	if opt.Counters == nil {
		opt.Counters = NewMemory(opt.Clock)
	}
	opt.Events = events.Or(opt.Events)
	return &Gate{opt: opt, clk: opt.Clock, log: opt.Log, c: opt.Counters, pending: map[spendKey]int64{}, notified: map[string]struct{}{}}
}

// Load restores the spend of the current budget windows from the store
// (counters that already exist, in a shared Redis, are left alone).
func (g *Gate) Load(ctx context.Context) error {
	if g.opt.Store == nil {
		return nil
	}
	now := g.clk.Now()
	spends, err := g.opt.Store.Spends(ctx, now.AddDate(0, -1, -1))
	if err != nil {
		return err
	}
	for _, sp := range spends {
		k, ok := g.opt.Keys.Key(sp.KeyID)
		if !ok || k.Budget == nil {
			continue
		}
		reset, _ := parseHHMM(k.Budget.ResetTime)
		start, end := window(sp.Period, reset, now)
		if !start.Equal(sp.WindowStart) {
			continue
		}
		if err := g.c.Seed(ctx, Counter{Key: budgetKey(sp.KeyID, sp.Period, start), Amount: sp.Micros, TTL: end.Sub(now)}); err != nil {
			return err
		}
	}
	return nil
}

// Run persists settled spend every FlushInterval, and once more when ctx
// ends.
func (g *Gate) Run(ctx context.Context) error {
	t := time.NewTicker(g.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return g.Flush(fctx)
		case <-t.C:
			if err := g.Flush(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("persisting key spend failed", "err", err)
			}
		}
	}
}

// Flush writes the spend settled since the last flush to the store; on
// failure it is kept for the next one.
func (g *Gate) Flush(ctx context.Context) error {
	if g.opt.Store == nil {
		return nil
	}
	g.mu.Lock()
	batch := g.pending
	g.pending = map[spendKey]int64{}
	g.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	spends := make([]store.Spend, 0, len(batch))
	for k, v := range batch {
		spends = append(spends, store.Spend{KeyID: k.key, Period: k.period, WindowStart: k.start, Micros: v})
	}
	if err := g.opt.Store.AddSpend(ctx, spends); err != nil {
		g.mu.Lock()
		for k, v := range batch {
			g.pending[k] += v
		}
		g.mu.Unlock()
		return err
	}
	return nil
}

// rateKey is "{keyID}:what:unix" (the braces keep a key's counters in one
// Redis cluster slot); built without fmt, as every request makes several.
func rateKey(keyID, what string, start time.Time) string {
	return counterKey(keyID, "", what, start)
}

// budgetKey is "{keyID}:usd:period:unix".
func budgetKey(keyID, period string, start time.Time) string {
	return counterKey(keyID, "usd:", period, start)
}

func counterKey(keyID, kind, what string, start time.Time) string {
	var n [20]byte
	unix := strconv.AppendInt(n[:0], start.Unix(), 10)
	var b strings.Builder // one allocation: the key itself
	b.Grow(len(keyID) + len(kind) + len(what) + len(unix) + 4)
	b.WriteByte('{')
	b.WriteString(keyID)
	b.WriteString("}:")
	b.WriteString(kind)
	b.WriteString(what)
	b.WriteByte(':')
	b.Write(unix)
	return b.String()
}

// budgetLimit returns a budget's limit for a period in USD (0: none).
func budgetLimit(b *store.Budget, period string) float64 {
	if b == nil {
		return 0
	}
	switch period {
	case Hourly:
		return b.HourlyUSD
	case Daily:
		return b.DailyUSD
	case Weekly:
		return b.WeeklyUSD
	case Monthly:
		return b.MonthlyUSD
	}
	return 0
}

// check names what a counter enforces, for refusals and settlement.
type check struct {
	what       string // "rpm" …, or the budget period ("daily" …) when usd
	limit      int64  // requests or tokens; USD micros when usd
	start, end time.Time
	usd        bool
	tokens     bool   // a token counter (tpm, tpd), settled to real usage
	key        string // the key's name (refusals) …
	keyID      string // … and id (persisted spend)
	warn       int64  // a budget's warning threshold in USD micros (0: none)
}

// limitText is the limit as a refusal names it: "60", "$5.00".
func (c check) limitText() string {
	if c.usd {
		return fmt.Sprintf("$%.2f", dollars(c.limit))
	}
	return strconv.FormatInt(c.limit, 10)
}

// Admit implements pipeline.Gate. A registered key issued by another key is
// held to both: its own policy, limits and budget, and its issuer's,
// whose counters it adds to (issuing keys does not multiply a budget).
// A token count (Call.Count) is held to the policy and the request
// limits (RPM, RPD) only: it uses no tokens and costs nothing.
func (g *Gate) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	if c.KeyID == "" || g.opt.Keys == nil {
		return ctx, nil, nil
	}
	k, ok := g.opt.Keys.Key(c.KeyID)
	if !ok { // config-file keys carry no policy
		return ctx, nil, nil
	}
	chain := [2]*store.APIKey{&k}
	var issuer store.APIKey
	if k.IssuerID != "" {
		var err error
		if issuer, err = g.issuer(&k); err != nil {
			return ctx, nil, err
		}
		chain[1] = &issuer
	}
	var targets []router.Target
	if g.opt.Resolver != nil {
		targets, _, _ = g.opt.Resolver.Resolve(c.Model)
	}
	var budgeted *store.APIKey
	for _, key := range chain {
		if key == nil {
			break
		}
		var err error
		if ctx, targets, err = g.policy(ctx, key, c.Model, targets); err != nil {
			return ctx, nil, err
		}
		if key.Budget != nil && budgeted == nil && !c.Count {
			budgeted = key
		}
	}

	now := g.clk.Now()
	// At most 4 rate counters and one per budget period, per key.
	n := 4 + len(Periods)
	if chain[1] != nil {
		n *= 2
	}
	cs := make([]Counter, 0, n)
	checks := make([]check, 0, n)
	in := int64(max(c.InputTokens, 0))
	var est int64
	if budgeted != nil {
		if _, unpriced := c.Billing(); unpriced != "" {
			return ctx, nil, &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "unpriced_for_budget",
				Message: fmt.Sprintf("%s is billed at prices the gateway does not know, so it cannot be kept within the budget of key %s: send the request without it, or use a key without a budget",
					unpriced, budgeted.Name)}
		}
		usd := g.estimate(c, targets)
		est, c.Reserved = micros(usd), usd
	}
	for _, key := range chain {
		if key == nil {
			break
		}
		addRate := func(what string, limit int64, d time.Duration, amount int64, tokens bool) {
			if limit <= 0 {
				return
			}
			start, end := rateWindow(d, now)
			cs = append(cs, Counter{Key: rateKey(key.ID, what, start), Limit: limit, Amount: amount, TTL: end.Sub(now)})
			checks = append(checks, check{what: what, limit: limit, end: end, tokens: tokens, key: key.Name, keyID: key.ID})
		}
		addRate("rpm", key.Limits.RPM, time.Minute, 1, false)
		addRate("rpd", key.Limits.RPD, 24*time.Hour, 1, false)
		if c.Count { // a token count uses no tokens and costs nothing
			continue
		}
		addRate("tpm", key.Limits.TPM, time.Minute, in, true)
		addRate("tpd", key.Limits.TPD, 24*time.Hour, in, true)
		if key.Budget != nil {
			reset, _ := parseHHMM(key.Budget.ResetTime)
			for _, p := range Periods {
				lim := budgetLimit(key.Budget, p)
				if lim <= 0 {
					continue
				}
				start, end := window(p, reset, now)
				cs = append(cs, Counter{Key: budgetKey(key.ID, p, start), Limit: micros(lim), Amount: est, TTL: end.Sub(now)})
				checks = append(checks, check{what: p, limit: micros(lim), start: start, end: end, usd: true, key: key.Name, keyID: key.ID,
					warn: micros(lim * key.Budget.WarningThreshold)})
			}
		}
	}
	if len(cs) == 0 {
		return ctx, nil, nil
	}
	i, err := g.c.Reserve(ctx, cs)
	if err != nil {
		return ctx, nil, err
	}
	if i >= 0 {
		ch := checks[i]
		e := &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "rate_limit_exceeded",
			Message: fmt.Sprintf("%s limit of %s reached for key %s", ch.what, ch.limitText(), ch.key), RetryAfter: ch.end.Sub(now)}
		if ch.usd {
			g.budgetEvent(ctx, events.BudgetExceeded, ch, 0)
			e.Code = "budget_exceeded"
			e.Message = fmt.Sprintf("Budget has been exceeded: %s budget of %s reached for key %s; it resets at %s",
				ch.what, ch.limitText(), ch.key, ch.end.Format(time.RFC3339))
		}
		if e.RetryAfter < time.Second {
			e.RetryAfter = time.Second
		}
		return ctx, nil, e
	}

	settle, checked := cs, checks          // captured by value, never appended to again
	keyID, priced := k.ID, budgeted != nil // what settling needs of the keys (which stay off the heap)
	done := func(o pipeline.Outcome) {
		adj := make([]Counter, 0, len(settle))
		// A call cut short is charged what it delivered or what was
		// reserved for it, whichever is more (the upstream may bill
		// more than reached the client); a failure or a cache hit
		// nothing.
		charged := o.CutShort || o.Status == http.StatusOK && o.Cache != "HIT"
		// Tokens: replace the input estimate by what the call really used.
		real := int64(0)
		if charged {
			u := o.Usage
			real = int64(u.InputTokens + u.OutputTokens + u.CacheReadTokens + u.CacheWriteTokens)
			if o.CutShort {
				real = max(real, in)
			}
		}
		// Spend: replace the reservation by the cost of the real usage.
		var cost int64
		if priced {
			if charged && o.Target.Provider != "" {
				if usd, ok := g.cost(o); ok {
					cost = micros(usd)
				}
			}
			if o.CutShort {
				cost = max(cost, est)
			}
		}
		if priced && cost > 0 && g.opt.Events != events.Discard {
			defer g.budgetWarnings(ctx, settle, checked, cost)
		}
		for j, ct := range settle {
			ch := checked[j]
			switch {
			case ch.tokens:
				if ct.Amount = real - in; ct.Amount != 0 {
					adj = append(adj, ct)
				}
			case ch.usd:
				if ct.Amount = cost - est; ct.Amount != 0 {
					adj = append(adj, ct)
				}
				if cost != 0 {
					g.mu.Lock()
					g.pending[spendKey{ch.keyID, ch.what, ch.start}] += cost
					g.mu.Unlock()
				}
			}
		}
		if len(adj) == 0 {
			return // the reservation was exact
		}
		actx := ctx
		if _, local := g.c.(*Memory); !local { // in-process counters do no I/O: no deadline needed
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
		}
		if err := g.c.Add(actx, adj); err != nil {
			g.log.Warn("settling key limits failed", "key", keyID, "err", err)
		}
	}
	return ctx, done, nil
}

// issuer returns the key that issued the registered key k; a revoked,
// expired or deleted issuer is a 403.
func (g *Gate) issuer(k *store.APIKey) (store.APIKey, error) {
	issuer, ok := g.opt.Keys.Key(k.IssuerID)
	now := g.clk.Now()
	if !ok || !issuer.RevokedAt.IsZero() || !issuer.ExpiresAt.IsZero() && !now.Before(issuer.ExpiresAt) {
		return store.APIKey{}, &llm.Error{Status: http.StatusForbidden, Type: llm.ErrPermission, Code: "issuer_revoked",
			Message: fmt.Sprintf("key %s was issued by a key that is revoked, expired or deleted", k.Name)}
	}
	return issuer, nil
}

var _ pipeline.ModelPolicy = (*Gate)(nil)

// Permits implements pipeline.ModelPolicy: Admit's key policy (the key's
// allowed models and providers and, for a registered key, its issuer's),
// without reserving or counting anything.
func (g *Gate) Permits(ctx context.Context, keyID, model string) error {
	if keyID == "" || g.opt.Keys == nil {
		return nil
	}
	k, ok := g.opt.Keys.Key(keyID)
	if !ok {
		return nil
	}
	chain := []store.APIKey{k}
	if k.IssuerID != "" {
		issuer, err := g.issuer(&k)
		if err != nil {
			return err
		}
		chain = append(chain, issuer)
	}
	var targets []router.Target
	if g.opt.Resolver != nil {
		targets, _, _ = g.opt.Resolver.Resolve(model)
	}
	for i := range chain {
		var err error
		if _, targets, err = g.policy(ctx, &chain[i], model, targets); err != nil {
			return err
		}
	}
	return nil
}

// policy enforces the allowed models and providers: a model the key may
// not use is a 403; targets of other providers (or not matching the
// allowed models, for combos and aliases) are filtered out so the router
// falls back to allowed ones.
func (g *Gate) policy(ctx context.Context, k *store.APIKey, model string, targets []router.Target) (context.Context, []router.Target, error) {
	if len(k.AllowedModels) == 0 && len(k.AllowedProviders) == 0 {
		return ctx, targets, nil
	}
	return g.restrict(ctx, *k, model, targets)
}

// restrict is policy for a key with allowed models or providers (apart,
// so that the key is copied to the heap for its filter only then).
func (g *Gate) restrict(ctx context.Context, k store.APIKey, model string, targets []router.Target) (context.Context, []router.Target, error) {
	forbid := func(format string, a ...any) error {
		return &llm.Error{Status: http.StatusForbidden, Type: llm.ErrPermission, Code: "model_not_allowed",
			Message: fmt.Sprintf(format, a...)}
	}
	modelOK := len(k.AllowedModels) == 0 || matchAny(k.AllowedModels, model)
	allowed := func(t router.Target) bool {
		if len(k.AllowedProviders) > 0 && !slices.Contains(k.AllowedProviders, t.Provider) {
			return false
		}
		return modelOK || matchAny(k.AllowedModels, t.Provider+"/"+t.Model) || matchAny(k.AllowedModels, t.Model)
	}
	if len(targets) == 0 {
		// Unknown to the table: the router answers 404; only the model
		// name can be judged here.
		if !modelOK {
			return ctx, nil, forbid("model %s is not allowed for key %s", model, k.Name)
		}
		return router.WithFilter(ctx, allowed), nil, nil
	}
	var kept []router.Target
	for _, t := range targets {
		if allowed(t) {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		if !modelOK {
			return ctx, nil, forbid("model %s is not allowed for key %s", model, k.Name)
		}
		return ctx, nil, forbid("model %s is served by no provider allowed for key %s (allowed: %s)", model, k.Name,
			strings.Join(k.AllowedProviders, ", "))
	}
	return router.WithFilter(ctx, allowed), kept, nil
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok || p == s {
			return true
		}
	}
	return false
}

// maxReservedOutput bounds the output tokens reserved per answer (a
// client's max_tokens for a model whose limit is not known).
const maxReservedOutput = 10_000_000

// connectionLister is the part of the routing table that gives a
// provider's connections, whose adapters may know what they send
// (router.OutputBounder).
type connectionLister interface {
	Connections(provider string) []router.Connection
}

// estimate is the most the call may cost on any of its allowed targets:
// estimated input plus, for each answer asked for (n), the output the
// target's upstream may bill (output), at the target's price; targets
// without a price count 0.
func (g *Gate) estimate(c *pipeline.Call, targets []router.Target) float64 {
	if c.Modality != "" {
		return g.estimateOp(c, targets)
	}
	conns, _ := g.opt.Resolver.(connectionLister)
	choices, _ := c.Billing()
	var most float64
	for _, t := range targets {
		out := g.output(c, t, conns)
		if usd, ok := g.opt.Pricer.EstimateCost(t.Provider, t.Model, c.InputTokens, out*choices); ok && usd > most {
			most = usd
		}
	}
	return most
}

// output is the most output tokens one answer to c may be billed on t:
// the cap the request sends (max_tokens, max_completion_tokens,
// max_output_tokens, maxOutputTokens, num_predict), even above the
// model's known limit, since the upstream, not the price table, decides
// what it writes; without one, the model's output limit, or the
// adapter's own default cap when that is lower (Anthropic's 4096); plus
// thinking billed beyond the cap (Gemini's thinkingBudget).
func (g *Gate) output(c *pipeline.Call, t router.Target, conns connectionLister) int {
	b := llm.OutputBound{Tokens: max(c.MaxTokens, 0)}
	if c.Request != nil && conns != nil {
		if cs := conns.Connections(t.Provider); len(cs) > 0 {
			if ob, ok := cs[0].Adapter.(router.OutputBounder); ok {
				b = ob.OutputBound(c.Request)
			}
		}
	}
	limit, _ := g.opt.Pricer.MaxOutput(t.Provider, t.Model)
	out := limit
	switch {
	case b.Tokens > 0 && !b.Default:
		out = b.Tokens
	case b.Tokens > 0:
		out = min(limit, b.Tokens)
	}
	return min(out+max(b.Extra, 0), maxReservedOutput)
}

// estimateOp is estimate for an operation beyond chat (Call.Modality):
// the price of its units and estimated input tokens on the dearest of
// its allowed targets; it writes no tokens.
func (g *Gate) estimateOp(c *pipeline.Call, targets []router.Target) float64 {
	var most float64
	for _, t := range targets {
		if usd, ok := g.opt.Pricer.UnitCost(t.Provider, t.Model, c.Units, llm.Usage{InputTokens: c.InputTokens}); ok && usd > most {
			most = usd
		}
	}
	return most
}

// cost is the price of what a call used on the target that answered: an
// operation's units and tokens, or a chat call's tokens.
func (g *Gate) cost(o pipeline.Outcome) (float64, bool) {
	if o.Units != nil {
		return g.opt.Pricer.UnitCost(o.Target.Provider, o.Target.Model, o.Units, o.Usage)
	}
	return g.opt.Pricer.Cost(o.Target.Provider, o.Target.Model, o.Usage)
}

// BudgetEvent is the data of a budget.warning or budget.exceeded event.
type BudgetEvent struct {
	KeyID     string    `json:"keyId"`
	KeyName   string    `json:"keyName"`
	Period    string    `json:"period"` // daily, weekly, monthly
	LimitUSD  float64   `json:"limitUsd"`
	SpentUSD  float64   `json:"spentUsd,omitempty"` // budget.warning: the spend (and reservations) counted
	ResetsAt  time.Time `json:"resetsAt"`
	Threshold float64   `json:"warningThreshold,omitempty"`
}

// budgetEvent publishes typ for ch's budget window once in this process.
func (g *Gate) budgetEvent(ctx context.Context, typ string, ch check, spent int64) {
	if g.opt.Events == events.Discard {
		return
	}
	id := typ + "\x00" + ch.keyID + "\x00" + ch.what + "\x00" + strconv.FormatInt(ch.start.Unix(), 10)
	g.mu.Lock()
	_, done := g.notified[id]
	if !done {
		if len(g.notified) >= 10_000 {
			clear(g.notified)
		}
		g.notified[id] = struct{}{}
	}
	g.mu.Unlock()
	if done {
		return
	}
	d := BudgetEvent{KeyID: ch.keyID, KeyName: ch.key, Period: ch.what, LimitUSD: dollars(ch.limit), ResetsAt: ch.end.UTC()}
	if typ == events.BudgetWarning {
		d.SpentUSD, d.Threshold = dollars(spent), float64(ch.warn)/float64(ch.limit)
	}
	g.opt.Events.Publish(ctx, events.Event{Type: typ, At: g.clk.Now(), Data: d})
}

// budgetWarnings publishes budget.warning for the budgets whose counter
// crossed its warning threshold with the cost just settled.
func (g *Gate) budgetWarnings(ctx context.Context, cs []Counter, checks []check, cost int64) {
	var keys []string
	var which []check
	for j, ch := range checks {
		if ch.usd && ch.warn > 0 {
			keys = append(keys, cs[j].Key)
			which = append(which, ch)
		}
	}
	if len(keys) == 0 {
		return
	}
	actx := context.WithoutCancel(ctx)
	if _, local := g.c.(*Memory); !local {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(actx, 2*time.Second)
		defer cancel()
	}
	vals, err := g.c.Get(actx, keys)
	if err != nil {
		return
	}
	for i, v := range vals {
		if ch := which[i]; v >= ch.warn && v-cost < ch.warn {
			g.budgetEvent(ctx, events.BudgetWarning, ch, v)
		}
	}
}
