package resilience_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
)

var epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func newTracker(t *testing.T, clk *clock.Fake, mutate func(*resilience.Settings)) *resilience.Tracker {
	t.Helper()
	tr, err := resilience.New(context.Background(), resilience.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		s := tr.Settings()
		mutate(&s)
		if err := tr.SetSettings(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func available(tr *resilience.Tracker, p, c, m string) bool {
	ok, _ := tr.Available(p, c, m)
	return ok
}

func breakerState(tr *resilience.Tracker, p string) string {
	for _, b := range tr.Breakers() {
		if b.Provider == p {
			return b.State
		}
	}
	return resilience.Closed
}

func TestBreakerTripsOn5xxNotOn4xx(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.CooldownBaseMS = 10 }) // cooldowns out of the way
	for _, st := range []int{429, 401, 400, 404, 429, 429, 429, 429, 429} {
		tr.Observe("p", "c1", "m", st, 0)
	}
	if got := breakerState(tr, "p"); got != resilience.Closed {
		t.Fatalf("breaker %s after 4xx answers, want closed", got)
	}
	for i, st := range []int{500, 502, 503, 504} {
		tr.Observe("p", "c"+string(rune('a'+i)), "m", st, 0)
	}
	clk.Advance(time.Second) // every connection's cooldown is over
	if !available(tr, "p", "c9", "m") {
		t.Fatal("4 failures opened the breaker; threshold is 5")
	}
	tr.Observe("p", "c9", "m", 0, 0) // a transport failure is the fifth
	ok, b := tr.Available("p", "c8", "m")
	if ok || b.Status != http.StatusServiceUnavailable || !b.Until.Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("after 5 failures: ok=%v block=%+v, want open for 30s", ok, b)
	}
	if !available(tr, "other", "c1", "m") {
		t.Fatal("another provider is blocked by p's breaker")
	}
}

func TestBreakerSuccessResetsCount(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.CooldownBaseMS = 10 })
	for i := 0; i < 4; i++ {
		tr.Observe("p", "c", "m", 500, 0)
	}
	tr.Observe("p", "c", "m", 200, 0)
	for i := 0; i < 4; i++ {
		tr.Observe("p", "c", "m", 500, 0)
	}
	clk.Advance(time.Second)
	if !available(tr, "p", "c", "m") {
		t.Fatal("failures before a success still counted")
	}
}

func TestBreakerHalfOpenProbe(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.BreakerThreshold = 2; s.CooldownBaseMS = 10 })
	tr.Observe("p", "c", "m", 503, 0)
	tr.Observe("p", "c", "m", 503, 0)
	clk.Advance(29 * time.Second)
	if available(tr, "p", "c", "m") {
		t.Fatal("open breaker admitted a request before its cool-off")
	}
	clk.Advance(time.Second)
	if !available(tr, "p", "c", "m") {
		t.Fatal("no probe after the cool-off")
	}
	if available(tr, "p", "c2", "m") {
		t.Fatal("a second request went through while the probe is in flight")
	}
	if got := breakerState(tr, "p"); got != resilience.HalfOpen {
		t.Fatalf("state %s during the probe, want half-open", got)
	}
	tr.Observe("p", "c", "m", 500, 0) // the probe fails: open again
	if available(tr, "p", "c2", "m") || breakerState(tr, "p") != resilience.Open {
		t.Fatal("a failed probe did not re-open the breaker")
	}
	clk.Advance(30 * time.Second)
	if !available(tr, "p", "c", "m") {
		t.Fatal("no second probe")
	}
	tr.Observe("p", "c", "m", 200, 0)
	for i := 0; i < 3; i++ {
		if !available(tr, "p", "c", "m") {
			t.Fatal("a successful probe did not close the breaker")
		}
	}
	if len(tr.Breakers()) != 0 {
		t.Fatalf("closed breaker still listed: %+v", tr.Breakers())
	}
}

func TestBreakerLostProbeFreesSlot(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.BreakerThreshold = 1; s.CooldownBaseMS = 10 })
	tr.Observe("p", "c", "m", 500, 0)
	clk.Advance(30 * time.Second)
	if !available(tr, "p", "c", "m") {
		t.Fatal("no probe")
	}
	// The probe's client leaves: no outcome arrives.
	clk.Advance(30 * time.Second)
	if !available(tr, "p", "c", "m") {
		t.Fatal("a lost probe blocks the provider for ever")
	}
}

func TestCooldownDoublesHonoursRetryAfterCapsAndEnds(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, nil)
	step := func(status int, retryAfter, want time.Duration) {
		t.Helper()
		start := clk.Now()
		tr.Observe("p", "c", "m", status, retryAfter)
		ok, b := tr.Available("p", "c", "m")
		if ok || b.Until.Sub(start) != want {
			t.Fatalf("after %d: available=%v for %s, want cooling for %s", status, ok, b.Until.Sub(start), want)
		}
		clk.Advance(want - time.Millisecond)
		if available(tr, "p", "c", "m") {
			t.Fatalf("cooldown of %s ended early", want)
		}
		clk.Advance(time.Millisecond)
		if !available(tr, "p", "c", "m") {
			t.Fatalf("cooldown of %s never ended", want)
		}
	}
	step(429, 0, 3*time.Second)
	step(429, 0, 6*time.Second)
	step(503, 0, 12*time.Second)
	step(429, 40*time.Second, 40*time.Second) // Retry-After longer than 24 s
	for i := 0; i < 4; i++ {
		tr.Observe("p", "c", "m", 429, 0)
	}
	step(429, 0, 5*time.Minute)            // capped
	step(429, 24*time.Hour, 5*time.Minute) // Retry-After is capped too
	// The cooldown is listed with its streak.
	cs := tr.Cooldowns()
	if len(cs) != 1 || cs[0].ConsecutiveFailures != 10 || cs[0].LastStatus != 429 || cs[0].Cooling {
		t.Fatalf("cooldowns %+v", cs)
	}
	tr.Observe("p", "c", "m", 200, 0) // success resets
	if len(tr.Cooldowns()) != 0 {
		t.Fatal("success did not reset the cooldown")
	}
	step(429, 0, 3*time.Second)
}

func TestCooldownStatusesAndScope(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, nil)
	for _, st := range []int{400, 403, 404, 422} {
		tr.Observe("p", "c", "m", st, 0)
		if !available(tr, "p", "c", "m") {
			t.Fatalf("status %d cooled the connection down", st)
		}
	}
	for _, st := range []int{0, 401, 408, 429, 500, 529} {
		tr.Observe("p", "c"+http.StatusText(st), "m", st, 0)
		if available(tr, "p", "c"+http.StatusText(st), "m") {
			t.Fatalf("status %d did not cool the connection down", st)
		}
	}
	if !available(tr, "p", "other", "m") {
		t.Fatal("a cooldown spread to another connection")
	}
	_, b := tr.Available("p", "c"+http.StatusText(http.StatusTooManyRequests), "m")
	if b.Status != http.StatusTooManyRequests {
		t.Fatalf("a 429 cooldown blocks as %d", b.Status)
	}
}

func TestLockout(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.CooldownBaseMS = 10 })
	tr.Observe("p", "c", "gone", 404, 0)
	if !available(tr, "p", "c", "gone") || len(tr.Lockouts()) != 0 {
		t.Fatal("lockouts are off by default, yet a 404 locked the model")
	}
	s := tr.Settings()
	s.LockoutEnabled = true
	if err := tr.SetSettings(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	tr.Observe("p", "c", "gone", 404, 0)
	clk.Advance(10 * time.Second)
	tr.Observe("p", "c", "busy", 429, 0)
	clk.Advance(time.Second) // past the connection cooldown
	if available(tr, "p", "c", "gone") || available(tr, "p", "c", "busy") {
		t.Fatal("404/429 did not lock the model out")
	}
	if !available(tr, "p", "c", "fine") || !available(tr, "p", "c2", "gone") {
		t.Fatal("a lockout spread to another model or connection")
	}
	ls := tr.Lockouts()
	if len(ls) != 2 || ls[0].Model != "gone" || ls[1].Model != "busy" || ls[0].RemainingMS != 49_000 || ls[1].RemainingMS != 59_000 {
		t.Fatalf("lockouts %+v, want gone (49 s left) then busy (59 s)", ls)
	}
	clk.Advance(49 * time.Second)
	if !available(tr, "p", "c", "gone") || len(tr.Lockouts()) != 1 {
		t.Fatal("lockout did not end")
	}
	s.LockoutEnabled = false
	tr.Observe("p", "c", "x", 404, 0)
	_ = tr.SetSettings(context.Background(), s)
	tr.Observe("p", "c", "y", 404, 0)
	if !available(tr, "p", "c", "y") {
		t.Fatal("lockout while disabled")
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := resilience.Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*resilience.Settings){
		func(s *resilience.Settings) { s.BreakerThreshold = 0 },
		func(s *resilience.Settings) { s.BreakerCooloffMS = -1 },
		func(s *resilience.Settings) { s.CooldownBaseMS = 0 },
		func(s *resilience.Settings) { s.CooldownMaxMS = s.CooldownBaseMS - 1 },
		func(s *resilience.Settings) { s.LockoutMS = 0 },
		func(s *resilience.Settings) { s.QueueSize = -1 },
		func(s *resilience.Settings) { s.QueueMaxWaitMS = 301_000 },
	}
	for i, f := range bad {
		s := resilience.Defaults()
		f(&s)
		if s.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, s)
		}
	}
}

// ---- through the router ----

type adapter struct {
	mu     sync.Mutex
	name   string
	status int // 0: answer
	calls  int
}

func (a *adapter) set(status int) { a.mu.Lock(); a.status = status; a.mu.Unlock() }

func (a *adapter) n() int { a.mu.Lock(); defer a.mu.Unlock(); return a.calls }

func (a *adapter) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.status != 0 {
		return nil, &llm.Error{Status: a.status, Type: llm.TypeForStatus(a.status), Message: "scripted"}
	}
	return &llm.Response{ID: a.name, Content: []llm.Part{{Type: llm.PartText, Text: a.name}}}, nil
}

func (a *adapter) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	return nil, errors.New("not used")
}

func TestRouterSkipsBlockedAndAnswersRetryAfter(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, nil)
	a1, a2 := &adapter{name: "a1", status: 429}, &adapter{name: "a2"}
	tbl := router.NewTable()
	tbl.SetProvider("p", []router.Connection{{ID: "p#1", Adapter: a1}, {ID: "p#2", Adapter: a2}})
	rt := router.New(tbl, clk)
	rt.SetHealth(tr)
	req := &llm.Request{Model: "p/m"}
	for i := 0; i < 6; i++ {
		res, err := rt.Chat(context.Background(), req)
		if err != nil || res.Response.ID != "a2" {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if a1.n() != 1 {
		t.Fatalf("the cooling connection was called %d times, want 1", a1.n())
	}
	// Both connections rate limited: 429 with Retry-After, no upstream call.
	a2.set(429)
	_, err := rt.Chat(context.Background(), req)
	var ex *router.ExhaustedError
	if !errors.As(err, &ex) || ex.Last.Status != 429 {
		t.Fatalf("err %v", err)
	}
	clk.Advance(time.Second)
	calls := a1.n() + a2.n()
	_, err = rt.Chat(context.Background(), req)
	if !errors.As(err, &ex) || ex.Last.Status != http.StatusTooManyRequests || ex.Last.RetryAfter != 2*time.Second {
		t.Fatalf("all cooling: %v (retry after %v), want 429 retry after 2s", err, ex.Last.RetryAfter)
	}
	if a1.n()+a2.n() != calls {
		t.Fatal("an upstream was called while every connection cooled down")
	}
	if len(ex.Attempts) != 2 || ex.Attempts[0].Error == "" || ex.Attempts[0].Status != 429 {
		t.Fatalf("attempts %+v, want two skips with reasons", ex.Attempts)
	}
}

func TestRouterBreakerFallsBackToNextTarget(t *testing.T) {
	clk := clock.NewFake(epoch)
	tr := newTracker(t, clk, func(s *resilience.Settings) { s.BreakerThreshold = 2; s.CooldownBaseMS = 10 })
	bad, good := &adapter{name: "bad", status: 502}, &adapter{name: "good"}
	tbl := router.NewTable()
	tbl.SetProvider("x", []router.Connection{{ID: "x#1", Adapter: bad}})
	tbl.SetProvider("y", []router.Connection{{ID: "y#1", Adapter: good}})
	if err := tbl.SetCombo(router.Combo{Name: "c", Targets: []router.Target{{Provider: "x", Model: "m"}, {Provider: "y", Model: "m"}}}); err != nil {
		t.Fatal(err)
	}
	rt := router.New(tbl, clk)
	rt.SetHealth(tr)
	for i := 0; i < 5; i++ {
		clk.Advance(20 * time.Millisecond) // past the connection cooldown
		res, err := rt.Chat(context.Background(), &llm.Request{Model: "c"})
		if err != nil || res.Response.ID != "good" {
			t.Fatalf("request %d: %v", i, err)
		}
		if i >= 2 && res.Attempts[0].Status != http.StatusServiceUnavailable {
			t.Fatalf("request %d: attempts %+v, want the open breaker recorded", i, res.Attempts)
		}
	}
	if bad.n() != 2 {
		t.Fatalf("open provider called %d times, want 2", bad.n())
	}
}

func TestQueueWaitsForRecovery(t *testing.T) {
	clk := clock.NewFake(epoch)
	var slept []time.Duration
	tr, err := resilience.New(context.Background(), resilience.Options{Clock: clk, Sleep: func(ctx context.Context, d time.Duration) error {
		slept = append(slept, d)
		clk.Advance(d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := &adapter{name: "a", status: 429}
	tbl := router.NewTable()
	tbl.SetProvider("p", []router.Connection{{ID: "p#1", Adapter: a}})
	rt := router.New(tbl, clk)
	rt.SetHealth(tr)
	req := &llm.Request{Model: "p/m"}
	if _, err := rt.Chat(context.Background(), req); err == nil {
		t.Fatal("scripted 429 succeeded")
	}
	a.set(0)
	// Default: no waiting.
	if _, err := rt.Chat(context.Background(), req); err == nil || len(slept) != 0 {
		t.Fatalf("err %v, slept %v: want an immediate refusal", err, slept)
	}
	s := tr.Settings()
	s.QueueMaxWaitMS = 2000
	_ = tr.SetSettings(context.Background(), s)
	// 3 s away: longer than the maximum wait.
	if _, err := rt.Chat(context.Background(), req); err == nil || len(slept) != 0 {
		t.Fatalf("err %v, slept %v: want a refusal, the recovery is beyond the maximum wait", err, slept)
	}
	clk.Advance(1500 * time.Millisecond)
	res, err := rt.Chat(context.Background(), req)
	if err != nil || res.Response.ID != "a" || len(slept) != 1 || slept[0] != 1500*time.Millisecond {
		t.Fatalf("err %v, slept %v: want one wait of 1.5 s then the answer", err, slept)
	}
	// A full queue refuses at once.
	a.set(429)
	_, _ = rt.Chat(context.Background(), req)
	s.QueueSize = 0
	_ = tr.SetSettings(context.Background(), s)
	clk.Advance(2 * time.Second)
	if _, err := rt.Chat(context.Background(), req); err == nil || len(slept) != 1 {
		t.Fatalf("err %v, slept %v: a full queue must refuse", err, slept)
	}
}

func TestOnlyConnectionIsNotCooledDown(t *testing.T) {
	clk := clock.NewFake(epoch)
	counts := map[string]int{"solo": 1, "pair": 2}
	tr, err := resilience.New(context.Background(), resilience.Options{Clock: clk,
		Connections: func(p string) int { return counts[p] }})
	if err != nil {
		t.Fatal(err)
	}
	tr.Observe("solo", "solo#1", "m", http.StatusTooManyRequests, time.Minute)
	tr.Observe("pair", "pair#1", "m", http.StatusTooManyRequests, 0)
	if !available(tr, "solo", "solo#1", "m") {
		t.Fatal("a provider's only connection was cooled down")
	}
	if available(tr, "pair", "pair#1", "m") {
		t.Fatal("a connection with a sibling was not cooled down")
	}
	for i := 0; i < 5; i++ {
		tr.Observe("solo", "solo#1", "m", http.StatusBadGateway, 0)
	}
	if available(tr, "solo", "solo#1", "m") {
		t.Fatal("the breaker does not cover a provider's only connection")
	}
}
