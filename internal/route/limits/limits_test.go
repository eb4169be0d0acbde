package limits_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/limits"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

var t0 = time.Date(2026, 11, 26, 10, 30, 15, 0, time.UTC) // a Thursday

// day is the time from t0 to the next UTC midnight.
const day = 13*time.Hour + 29*time.Minute + 45*time.Second

type keys map[string]store.APIKey

func (k keys) Key(id string) (store.APIKey, bool) { v, ok := k[id]; return v, ok }

// pricer: $1 per million input tokens, $2 per million output tokens, for
// every target of provider "paid"; other providers are unpriced.
type pricer struct{}

func (pricer) Cost(p, _ string, u llm.Usage) (float64, bool) {
	if p != "paid" {
		return 0, false
	}
	return (float64(u.InputTokens)*1 + float64(u.OutputTokens)*2) / 1e6, true
}

func (p pricer) EstimateCost(prov, m string, in, out int) (float64, bool) {
	return p.Cost(prov, m, llm.Usage{InputTokens: in, OutputTokens: out})
}

// UnitCost: the tokens as Cost, and documents at $1 per 1,000.
func (p pricer) UnitCost(prov, m string, units []llm.Quantity, u llm.Usage) (float64, bool) {
	usd, ok := p.Cost(prov, m, u)
	if !ok {
		return 0, false
	}
	n, _ := llm.Find(units, llm.UnitDocument)
	return usd + float64(n)/1000, true
}

// MaxOutput: models write at most a million tokens.
func (pricer) MaxOutput(string, string) (int, bool) { return 1_000_000, true }

type resolver struct{}

func (resolver) Resolve(model string) ([]router.Target, string, error) {
	if model == "team" {
		return []router.Target{{Provider: "a", Model: "m"}, {Provider: "b", Model: "m"}}, "priority", nil
	}
	if p, m, ok := router.SplitModel(model); ok {
		return []router.Target{{Provider: p, Model: m}}, "", nil
	}
	return nil, "", errors.New("unknown")
}

func newGate(t *testing.T, clk clock.Clock, k store.APIKey, c limits.Counters, st limits.Store) *limits.Gate {
	t.Helper()
	return limits.New(limits.Options{Keys: keys{k.ID: k}, Pricer: pricer{}, Resolver: resolver{}, Counters: c, Store: st, Clock: clk})
}

func call(keyID, model string, in, maxOut int) *pipeline.Call {
	return &pipeline.Call{KeyID: keyID, Model: model, InputTokens: in, MaxTokens: maxOut}
}

func refusal(t *testing.T, err error, status int, msg string) *llm.Error {
	t.Helper()
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != status || !strings.Contains(le.Message, msg) {
		t.Fatalf("err = %v, want %d containing %q", err, status, msg)
	}
	return le
}

func TestRateLimitsAtBoundaryAndRollover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits store.KeyLimits
		in     int
		n      int           // calls admitted in one window
		roll   time.Duration // time to the next window
	}{
		{"rpm", store.KeyLimits{RPM: 3}, 1, 3, 45 * time.Second},
		{"rpd", store.KeyLimits{RPD: 4}, 1, 4, day},
		{"tpm", store.KeyLimits{TPM: 100}, 30, 4, 45 * time.Second}, // 0, 30, 60, 90 < 100: four pass
		{"tpd", store.KeyLimits{TPD: 50}, 20, 3, day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			g := newGate(t, clk, store.APIKey{ID: "k1", Name: "ci", Limits: tc.limits}, nil, nil)
			ctx := context.Background()
			for i := 0; i < tc.n; i++ {
				if _, _, err := g.Admit(ctx, call("k1", "a/m", tc.in, 0)); err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
			}
			_, _, err := g.Admit(ctx, call("k1", "a/m", tc.in, 0))
			le := refusal(t, err, http.StatusTooManyRequests, tc.name+" limit of ")
			if !strings.Contains(le.Message, "for key ci") || le.RetryAfter <= 0 || le.RetryAfter > tc.roll {
				t.Fatalf("refusal %q retry after %v (window ends in %v)", le.Message, le.RetryAfter, tc.roll)
			}
			clk.Advance(tc.roll - time.Second)
			if _, _, err := g.Admit(ctx, call("k1", "a/m", tc.in, 0)); err == nil {
				t.Fatal("admitted before the window rolled over")
			}
			clk.Advance(time.Second)
			if _, _, err := g.Admit(ctx, call("k1", "a/m", tc.in, 0)); err != nil {
				t.Fatalf("after rollover: %v", err)
			}
		})
	}
}

func TestTokensSettleFromRealUsage(t *testing.T) {
	clk := clock.NewFake(t0)
	g := newGate(t, clk, store.APIKey{ID: "k1", Name: "ci", Limits: store.KeyLimits{TPM: 100}}, nil, nil)
	ctx := context.Background()
	_, done, err := g.Admit(ctx, call("k1", "a/m", 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	done(pipeline.Outcome{Status: 200, Target: router.Target{Provider: "a", Model: "m"}, Usage: llm.Usage{InputTokens: 40, OutputTokens: 59}})
	// 99 used: one more is admitted; its real usage brings the window to 100.
	_, done, err = g.Admit(ctx, call("k1", "a/m", 10, 0))
	if err != nil {
		t.Fatal(err)
	}
	done(pipeline.Outcome{Status: 200, Usage: llm.Usage{InputTokens: 1}})
	_, _, err = g.Admit(ctx, call("k1", "a/m", 10, 0))
	refusal(t, err, http.StatusTooManyRequests, "tpm limit of 100")
	// A failed call releases its estimate.
	clk.Advance(time.Minute)
	_, done, _ = g.Admit(ctx, call("k1", "a/m", 99, 0))
	done(pipeline.Outcome{Status: 502})
	if _, _, err := g.Admit(ctx, call("k1", "a/m", 99, 0)); err != nil {
		t.Fatalf("estimate of a failed call was kept: %v", err)
	}
}

func TestAllowedModelsAndProviders(t *testing.T) {
	clk := clock.NewFake(t0)
	ctx := context.Background()
	g := newGate(t, clk, store.APIKey{ID: "k1", Name: "ci", AllowedProviders: []string{"b"}}, nil, nil)
	_, _, err := g.Admit(ctx, call("k1", "a/m", 1, 0))
	refusal(t, err, http.StatusForbidden, "no provider allowed")
	if _, _, err := g.Admit(ctx, call("k1", "team", 1, 0)); err != nil {
		t.Fatalf("combo with an allowed target: %v", err)
	}
	g = newGate(t, clk, store.APIKey{ID: "k1", Name: "ci", AllowedModels: []string{"b/*", "gpt-4o*"}}, nil, nil)
	_, _, err = g.Admit(ctx, call("k1", "a/m", 1, 0))
	refusal(t, err, http.StatusForbidden, "model a/m is not allowed")
	for _, m := range []string{"b/m", "team", "gpt-4o-mini"} {
		if _, _, err := g.Admit(ctx, call("k1", m, 1, 0)); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	// Requests without a stored key are not limited.
	if _, _, err := g.Admit(ctx, call("config:1", "a/m", 1, 0)); err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.New(context.Background(), db, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestBudgetReserveSettlePersist(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	st := openStore(t)
	k := store.APIKey{ID: "k1", Name: "ci", Prefix: "sk-omni-abcd", Hash: "h1", CreatedAt: t0,
		Budget: &store.Budget{DailyUSD: 0.01, WeeklyUSD: 1, ResetTime: "00:00", WarningThreshold: 0.8, UpdatedAt: t0}}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	g := newGate(t, clk, k, nil, st)
	// Estimate: 1000 in + 2000 out = $0.005 reserved; two calls in flight
	// reserve $0.010 = the daily limit, so a third is refused.
	_, done1, err := g.Admit(ctx, call("k1", "paid/m", 1000, 2000))
	if err != nil {
		t.Fatal(err)
	}
	_, done2, err := g.Admit(ctx, call("k1", "paid/m", 1000, 2000))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = g.Admit(ctx, call("k1", "paid/m", 1000, 2000))
	le := refusal(t, err, http.StatusTooManyRequests, "daily budget of $0.01")
	if le.Code != "budget_exceeded" || le.RetryAfter != 13*time.Hour+29*time.Minute+45*time.Second {
		t.Fatalf("refusal %+v", le)
	}
	// Settle: real usage 500 in + 250 out = $0.001; the failed call costs nothing.
	done1(pipeline.Outcome{Status: 200, Target: router.Target{Provider: "paid", Model: "m"}, Usage: llm.Usage{InputTokens: 500, OutputTokens: 250}})
	done2(pipeline.Outcome{Status: 500})
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	spends, err := st.Spends(ctx, t0.AddDate(0, -1, 0))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, s := range spends {
		got[s.Period] = s.Micros
	}
	if len(got) != 2 || got["daily"] != 1000 || got["weekly"] != 1000 {
		t.Fatalf("persisted spend %v, want 1000 micros daily and weekly", spends)
	}
	// A new gate (a restart) starts from the persisted spend: $0.001 spent,
	// so one $0.005 reservation fits and, with the next, the limit is hit.
	g2 := newGate(t, clk, k, nil, st)
	if err := g2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, _, err := g2.Admit(ctx, call("k1", "paid/m", 1000, 2000)); err != nil {
			t.Fatalf("call %d after restart: %v", i+1, err)
		}
	}
	_, _, err = g2.Admit(ctx, call("k1", "paid/m", 1000, 2000))
	refusal(t, err, http.StatusTooManyRequests, "daily budget")
	// The daily window resets at 00:00 UTC; the weekly one still holds.
	clk.Advance(13*time.Hour + 29*time.Minute + 45*time.Second)
	if _, _, err := g2.Admit(ctx, call("k1", "paid/m", 1000, 2000)); err != nil {
		t.Fatalf("next day: %v", err)
	}
}

// admitConcurrently runs n Admit calls at once and counts the admitted ones.
func admitConcurrently(t *testing.T, gates []*limits.Gate, n int, c func() *pipeline.Call) int {
	t.Helper()
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(g *limits.Gate) {
			defer wg.Done()
			<-start
			_, _, err := g.Admit(context.Background(), c())
			if err == nil {
				ok.Add(1)
				return
			}
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusTooManyRequests {
				t.Errorf("unexpected error %v", err)
			}
		}(gates[i%len(gates)])
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

func TestConcurrentRequestsExactlyAtLimit(t *testing.T) {
	clk := clock.NewFake(t0)
	k := store.APIKey{ID: "k1", Name: "ci", Limits: store.KeyLimits{RPM: 10}}
	g := newGate(t, clk, k, nil, nil)
	if n := admitConcurrently(t, []*limits.Gate{g}, 50, func() *pipeline.Call { return call("k1", "a/m", 1, 0) }); n != 10 {
		t.Fatalf("%d of 50 admitted with rpm 10", n)
	}
	// Budget: $1 a day, each call reserves $0.1 → exactly 10.
	kb := store.APIKey{ID: "k2", Name: "b", Budget: &store.Budget{DailyUSD: 1, ResetTime: "00:00"}}
	gb := newGate(t, clk, kb, nil, nil)
	if n := admitConcurrently(t, []*limits.Gate{gb}, 50, func() *pipeline.Call { return call("k2", "paid/m", 0, 50000) }); n != 10 {
		t.Fatalf("%d of 50 admitted with a $1 budget and $0.1 reservations", n)
	}
}

func TestTwoInstancesShareRedis(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	clk := clock.NewFake(t0)
	k := store.APIKey{ID: "k1", Name: "ci", Limits: store.KeyLimits{RPM: 10, TPM: 1000},
		Budget: &store.Budget{DailyUSD: 1, ResetTime: "00:00"}}
	g1 := newGate(t, clk, k, limits.NewRedis(rc, prefix), nil)
	g2 := newGate(t, clk, k, limits.NewRedis(rc, prefix), nil)
	if n := admitConcurrently(t, []*limits.Gate{g1, g2}, 50, func() *pipeline.Call { return call("k1", "a/m", 1, 0) }); n != 10 {
		t.Fatalf("%d of 50 admitted across two instances with rpm 10", n)
	}
	// Budget shared too: a new minute, $0.1 reservations, $1 a day.
	clk.Advance(time.Minute)
	kb := k
	kb.Limits = store.KeyLimits{}
	g3 := newGate(t, clk, kb, limits.NewRedis(rc, prefix), nil)
	g4 := newGate(t, clk, kb, limits.NewRedis(rc, prefix), nil)
	if n := admitConcurrently(t, []*limits.Gate{g3, g4}, 50, func() *pipeline.Call { return call("k1", "paid/m", 0, 50000) }); n != 10 {
		t.Fatalf("%d of 50 admitted across two instances with a $1 budget", n)
	}
	// The day's budget stays spent in the next minute, on either instance.
	clk.Advance(time.Minute)
	_, _, err := g3.Admit(context.Background(), call("k1", "paid/m", 0, 50000))
	refusal(t, err, http.StatusTooManyRequests, "daily budget")
}

// A token count (Call.Count) is held to the key's policy and request
// limits, but uses no tokens and costs nothing: a budget a chat would
// exceed does not refuse it.
func TestTokenCountsUseRequestLimitsOnly(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	k := store.APIKey{ID: "k1", Name: "ci", AllowedProviders: []string{"paid"}, Limits: store.KeyLimits{RPM: 3},
		Budget: &store.Budget{DailyUSD: 0.0001, ResetTime: "00:00"}}
	g := newGate(t, clk, k, nil, nil)
	count := func(model string) *pipeline.Call { return &pipeline.Call{KeyID: "k1", Model: model, Count: true} }
	// A chat may write a million tokens: its $2 reservation uses the
	// budget up, and the next chat is refused; counts are not.
	if _, _, err := g.Admit(ctx, call("k1", "paid/m", 10, 0)); err != nil {
		t.Fatal(err)
	}
	_, _, err := g.Admit(ctx, call("k1", "paid/m", 10, 0))
	refusal(t, err, http.StatusTooManyRequests, "daily budget")
	for i := range 2 {
		_, done, err := g.Admit(ctx, count("paid/m"))
		if err != nil {
			t.Fatalf("count %d: %v", i+1, err)
		}
		if done != nil {
			done(pipeline.Outcome{Status: 200, Target: router.Target{Provider: "paid", Model: "m"}})
		}
	}
	// Counts are requests: with the chat, the fourth this minute is over
	// the RPM.
	_, _, err = g.Admit(ctx, count("paid/m"))
	refusal(t, err, http.StatusTooManyRequests, "rpm limit of 3")
	clk.Advance(time.Minute)
	// The policy holds.
	_, _, err = g.Admit(ctx, count("free/m"))
	refusal(t, err, http.StatusForbidden, "no provider allowed")
}
