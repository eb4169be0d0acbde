package limits

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

const maxBody = 1 << 16

// Register adds the budget endpoints through add (the management API's
// guarded route adder).
func (g *Gate) Register(add func(pattern string, h httpx.HandlerFunc)) {
	add("GET /api/usage/budget", g.listBudgets)
	add("POST /api/usage/budget", g.setBudget)
	add("PUT /api/usage/budget", g.setBudget)
}

// setBudgetBody is the spec's setBudgetSchema (plus hourlyLimitUsd).
type setBudgetBody struct {
	APIKeyID         *string  `json:"apiKeyId"`
	HourlyLimitUSD   *float64 `json:"hourlyLimitUsd"`
	DailyLimitUSD    *float64 `json:"dailyLimitUsd"`
	WeeklyLimitUSD   *float64 `json:"weeklyLimitUsd"`
	MonthlyLimitUSD  *float64 `json:"monthlyLimitUsd"`
	WarningThreshold *float64 `json:"warningThreshold"`
	ResetInterval    *string  `json:"resetInterval"`
	ResetTime        *string  `json:"resetTime"`
}

// parseBudget validates a setBudgetSchema body.
func parseBudget(raw []byte) (store.Budget, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil || probe == nil {
		return store.Budget{}, httpx.BadRequest("the body must be a JSON object")
	}
	if _, ok := probe["apiKeyId"]; !ok {
		_, k := probe["keyId"]
		_, l := probe["limit"]
		_, p := probe["period"]
		if k || l || p {
			return store.Budget{}, httpx.BadRequest(`the {keyId, limit, period} budget shape is no longer accepted: send {apiKeyId, dailyLimitUsd, weeklyLimitUsd, monthlyLimitUsd, warningThreshold, resetInterval, resetTime}`)
		}
	}
	var b setBudgetBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return store.Budget{}, httpx.BadRequest("invalid budget: %v", err)
	}
	if b.APIKeyID == nil || *b.APIKeyID == "" {
		return store.Budget{}, httpx.BadRequest(`"apiKeyId" is required`)
	}
	out := store.Budget{KeyID: *b.APIKeyID, WarningThreshold: 0.8, ResetTime: "00:00"}
	for _, f := range []struct {
		name string
		v    *float64
		dst  *float64
	}{{"hourlyLimitUsd", b.HourlyLimitUSD, &out.HourlyUSD}, {"dailyLimitUsd", b.DailyLimitUSD, &out.DailyUSD},
		{"weeklyLimitUsd", b.WeeklyLimitUSD, &out.WeeklyUSD}, {"monthlyLimitUsd", b.MonthlyLimitUSD, &out.MonthlyUSD}} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 || math.IsNaN(*f.v) || math.IsInf(*f.v, 0) || *f.v > 1e9 {
			return store.Budget{}, httpx.BadRequest("%q must be a number from 0 to 1e9", f.name)
		}
		*f.dst = *f.v
	}
	if out.DailyUSD <= 0 && out.WeeklyUSD <= 0 && out.MonthlyUSD <= 0 {
		return store.Budget{}, httpx.BadRequest(`at least one of "dailyLimitUsd", "weeklyLimitUsd", "monthlyLimitUsd" must be greater than 0`)
	}
	if b.WarningThreshold != nil {
		if !(*b.WarningThreshold >= 0 && *b.WarningThreshold <= 1) {
			return store.Budget{}, httpx.BadRequest(`"warningThreshold" must be between 0 and 1`)
		}
		out.WarningThreshold = *b.WarningThreshold
	}
	if b.ResetInterval != nil && *b.ResetInterval != "" {
		if !slices.Contains([]string{Daily, Weekly, Monthly}, *b.ResetInterval) {
			return store.Budget{}, httpx.BadRequest(`"resetInterval" must be daily, weekly or monthly`)
		}
		out.ResetInterval = *b.ResetInterval
	}
	if b.ResetTime != nil {
		if _, err := parseHHMM(*b.ResetTime); err != nil || *b.ResetTime == "" {
			return store.Budget{}, httpx.BadRequest(`"resetTime" must be HH:MM (00:00–23:59 UTC)`)
		}
		out.ResetTime = *b.ResetTime
	}
	return out, nil
}

func (g *Gate) setBudget(w http.ResponseWriter, r *http.Request) error {
	raw, err := httpx.ReadBody(w, r, maxBody)
	if err != nil {
		return err
	}
	b, err := parseBudget(raw)
	if err != nil {
		return err
	}
	if g.opt.Store == nil {
		return httpx.Errorf(http.StatusServiceUnavailable, "no_store", "budgets need the route store")
	}
	b.UpdatedAt = g.clk.Now().UTC().Truncate(time.Millisecond)
	if err := g.opt.Store.SetBudget(r.Context(), b); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return httpx.NotFound("no gateway key %q", b.KeyID)
		}
		return err
	}
	if g.opt.Refresh != nil {
		if err := g.opt.Refresh(r.Context()); err != nil {
			return err
		}
	}
	keys, err := g.opt.Store.APIKeys(r.Context())
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID == b.KeyID && k.Budget != nil {
			st, err := g.status(r.Context(), k)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, st)
			return nil
		}
	}
	return httpx.NotFound("no gateway key %q", b.KeyID)
}

// PeriodStatus is a budget's state in one period.
type PeriodStatus struct {
	Period         string    `json:"period"`
	LimitUSD       float64   `json:"limitUsd"`
	SpentUSD       float64   `json:"spentUsd"`
	RemainingUSD   float64   `json:"remainingUsd"`
	WindowStart    time.Time `json:"windowStart"`
	ResetsAt       time.Time `json:"resetsAt"`
	WarningReached bool      `json:"warningReached"`
	Exceeded       bool      `json:"exceeded"`
}

// Status is a key's budget status.
type Status struct {
	APIKeyID         string         `json:"apiKeyId"`
	Name             string         `json:"name"`
	HourlyLimitUSD   float64        `json:"hourlyLimitUsd,omitempty"`
	DailyLimitUSD    float64        `json:"dailyLimitUsd"`
	WeeklyLimitUSD   float64        `json:"weeklyLimitUsd"`
	MonthlyLimitUSD  float64        `json:"monthlyLimitUsd"`
	WarningThreshold float64        `json:"warningThreshold"`
	ResetInterval    string         `json:"resetInterval"`
	ResetTime        string         `json:"resetTime"`
	Period           string         `json:"period"` // the resetInterval's period: spentUsd/remainingUsd below
	SpentUSD         float64        `json:"spentUsd"`
	RemainingUSD     float64        `json:"remainingUsd"`
	WarningReached   bool           `json:"warningReached"`
	Exceeded         bool           `json:"exceeded"`
	Periods          []PeriodStatus `json:"periods"`
}

// status computes a key's budget status from the live counters (which
// include the reservations of calls in flight).
func (g *Gate) status(ctx context.Context, k store.APIKey) (Status, error) {
	b := k.Budget
	now := g.clk.Now()
	reset, _ := parseHHMM(b.ResetTime)
	st := Status{APIKeyID: k.ID, Name: k.Name, HourlyLimitUSD: b.HourlyUSD, DailyLimitUSD: b.DailyUSD, WeeklyLimitUSD: b.WeeklyUSD,
		MonthlyLimitUSD: b.MonthlyUSD, WarningThreshold: b.WarningThreshold, ResetInterval: b.ResetInterval, ResetTime: b.ResetTime,
		Periods: []PeriodStatus{}}
	var keys []string
	for _, p := range Periods {
		lim := budgetLimit(b, p)
		if lim <= 0 {
			continue
		}
		start, end := window(p, reset, now)
		keys = append(keys, budgetKey(k.ID, p, start))
		st.Periods = append(st.Periods, PeriodStatus{Period: p, LimitUSD: lim, WindowStart: start, ResetsAt: end})
		st.Period = p // the longest period with a limit, unless resetInterval names one
	}
	vals, err := g.c.Get(ctx, keys)
	if err != nil {
		return st, err
	}
	for i := range st.Periods {
		ps := &st.Periods[i]
		ps.SpentUSD = dollars(max(vals[i], 0))
		ps.RemainingUSD = math.Max(0, ps.LimitUSD-ps.SpentUSD)
		ps.Exceeded = ps.SpentUSD >= ps.LimitUSD
		ps.WarningReached = ps.SpentUSD >= b.WarningThreshold*ps.LimitUSD
		st.WarningReached = st.WarningReached || ps.WarningReached
		st.Exceeded = st.Exceeded || ps.Exceeded
	}
	if b.ResetInterval != "" && budgetLimit(b, b.ResetInterval) > 0 {
		st.Period = b.ResetInterval
	}
	for _, ps := range st.Periods {
		if ps.Period == st.Period {
			st.SpentUSD, st.RemainingUSD = ps.SpentUSD, ps.RemainingUSD
		}
	}
	return st, nil
}

// BudgetStatus is the budget status of the stored key keyID from the
// live counters; nil when the key has no budget (or is not stored).
func (g *Gate) BudgetStatus(ctx context.Context, keyID string) (*Status, error) {
	k, ok := g.opt.Keys.Key(keyID)
	if !ok || k.Budget == nil {
		return nil, nil
	}
	st, err := g.status(ctx, k)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

func (g *Gate) listBudgets(w http.ResponseWriter, r *http.Request) error {
	out, err := g.Budgets(r.Context(), "")
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"budgets": out})
	return nil
}

// Budgets are the budget states of the live key keyID, or ("") of every
// live key with a budget, from the live counters.
func (g *Gate) Budgets(ctx context.Context, keyID string) ([]Status, error) {
	out := []Status{}
	if g.opt.Store == nil {
		return out, nil
	}
	keys, err := g.opt.Store.APIKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.Budget == nil || !k.RevokedAt.IsZero() || (keyID != "" && k.ID != keyID) {
			continue
		}
		st, err := g.status(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
