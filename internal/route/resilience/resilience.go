// Package resilience owns the gateway's three temporary-failure layers and
// its request queue: a circuit breaker per provider (opens on repeated
// 408/5xx/transport failures, half-opens for a single probe), a cooldown
// per connection (429, 401, 408, 5xx; exponential, capped, honouring
// Retry-After, reset by a success), an optional lockout per (provider,
// connection, model), and a bounded wait for the earliest recovery when
// everything is blocked. Its Tracker implements router.Health and
// router.Waiter; with Redis, trips and cooldowns are shared by replicas.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/router"
)

// Settings configure the layers; the management API changes them.
type Settings struct {
	BreakerThreshold int   `json:"breaker_threshold"`  // consecutive failures that open a provider's breaker
	BreakerCooloffMS int64 `json:"breaker_cooloff_ms"` // open → half-open after this
	CooldownBaseMS   int64 `json:"cooldown_base_ms"`   // first cooldown of a connection; doubles per failure
	CooldownMaxMS    int64 `json:"cooldown_max_ms"`    // cap of a cooldown (Retry-After included)
	LockoutEnabled   bool  `json:"lockout_enabled"`    // per-model lockouts on 404/429
	LockoutMS        int64 `json:"lockout_ms"`         // how long a model stays locked out
	QueueSize        int   `json:"queue_size"`         // requests that may wait at once
	QueueMaxWaitMS   int64 `json:"queue_max_wait_ms"`  // longest wait for a recovery (0: fail at once)
}

// Defaults are the settings until changed.
func Defaults() Settings {
	return Settings{BreakerThreshold: 5, BreakerCooloffMS: 30_000, CooldownBaseMS: 3_000, CooldownMaxMS: 300_000,
		LockoutEnabled: false, LockoutMS: 60_000, QueueSize: 64, QueueMaxWaitMS: 0}
}

// Validate explains the first bad value.
func (s Settings) Validate() error {
	const day = int64(24 * time.Hour / time.Millisecond)
	switch {
	case s.BreakerThreshold < 1 || s.BreakerThreshold > 1000:
		return errors.New("breaker_threshold must be between 1 and 1000")
	case s.BreakerCooloffMS < 100 || s.BreakerCooloffMS > day:
		return errors.New("breaker_cooloff_ms must be between 100 and 86400000")
	case s.CooldownBaseMS < 10 || s.CooldownBaseMS > day:
		return errors.New("cooldown_base_ms must be between 10 and 86400000")
	case s.CooldownMaxMS < s.CooldownBaseMS || s.CooldownMaxMS > day:
		return errors.New("cooldown_max_ms must be at least cooldown_base_ms and at most 86400000")
	case s.LockoutMS < 100 || s.LockoutMS > day:
		return errors.New("lockout_ms must be between 100 and 86400000")
	case s.QueueSize < 0 || s.QueueSize > 100_000:
		return errors.New("queue_size must be between 0 and 100000")
	case s.QueueMaxWaitMS < 0 || s.QueueMaxWaitMS > 300_000:
		return errors.New("queue_max_wait_ms must be between 0 and 300000")
	}
	return nil
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// Breaker states.
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half-open"
)

// BreakerTrips reports whether a status counts against a provider's
// breaker: 408, 500, 502, 503, 504 and transport failures (0).
func BreakerTrips(status int) bool {
	switch status {
	case 0, http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// CoolsDown reports whether a status cools a connection down: 429, 401
// (the credential is refused), 408, 5xx and transport failures.
func CoolsDown(status int) bool {
	return status == 0 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized ||
		status == http.StatusRequestTimeout || status >= 500
}

// LocksOut reports whether a status locks a model out of a connection
// (when lockouts are enabled): 404 (model not found there) and 429.
func LocksOut(status int) bool {
	return status == http.StatusNotFound || status == http.StatusTooManyRequests
}

type connKey struct{ provider, connection string }

type modelKey struct{ provider, connection, model string }

type breaker struct {
	State      string
	Failures   int
	OpenUntil  time.Time // while open
	probeUntil time.Time // half-open: a probe is in flight until then (local only)
	LastStatus int
}

type cooldown struct {
	Failures   int
	Until      time.Time
	LastStatus int
	LastAt     time.Time
}

type lockout struct {
	Until  time.Time
	Status int
}

// Store persists settings; route/store's Store is one.
type Store interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
}

// SettingKey is where the settings are stored (JSON).
const SettingKey = "resilience"

// Options configure a Tracker.
type Options struct {
	Clock clock.Clock
	Store Store // nil: settings live in memory only
	// Redis, when set, shares breaker trips, cooldowns, lockouts and
	// setting changes with every Tracker on it under Prefix.
	Redis  *redis.Client
	Prefix string
	Log    *slog.Logger
	// Sleep waits d or until ctx ends (tests replace it; default a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Connections, when set, counts a provider's connections: the only
	// connection of a provider is not cooled down (there is nothing to
	// rotate to; its breaker and the fallback to other targets cover
	// it), as LiteLLM spares single-deployment groups.
	Connections func(provider string) int
	// Events hears breaker.opened, provider.down (a closed breaker
	// opened: the provider failed BreakerThreshold times in a row) and
	// breaker.closed, as this replica observes them (nil: none).
	Events events.Publisher
}

// Tracker holds the state of every layer. It implements router.Health
// and router.Waiter.
type Tracker struct {
	clk        clock.Clock
	store      Store
	log        *slog.Logger
	sleep      func(ctx context.Context, d time.Duration) error
	conns      func(provider string) int
	events     events.Publisher
	shared     *shared
	settings   atomic.Pointer[Settings]
	active     atomic.Int64 // entries in the maps below; 0 keeps the hot path lock-free
	waiting    atomic.Int64
	subscribed atomic.Bool

	mu        sync.RWMutex
	breakers  map[string]*breaker
	cooldowns map[connKey]*cooldown
	lockouts  map[modelKey]*lockout
	lockWrite int // lockouts set: every 1024th sweeps the expired ones
}

// maxLockouts bounds the model lockouts: the model is the client's to
// name. At the bound, expired lockouts go first, then the half ending
// soonest.
const maxLockouts = 4096

var (
	_ router.Health = (*Tracker)(nil)
	_ router.Waiter = (*Tracker)(nil)
)

// New returns a Tracker with the stored settings (or the defaults) and,
// with Redis, the state other replicas left there. Call Run to follow
// the other replicas' changes.
func New(ctx context.Context, o Options) (*Tracker, error) {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	t := &Tracker{clk: o.Clock, store: o.Store, log: o.Log, sleep: o.Sleep, conns: o.Connections, events: events.Or(o.Events),
		breakers: map[string]*breaker{}, cooldowns: map[connKey]*cooldown{}, lockouts: map[modelKey]*lockout{}}
	d := Defaults()
	t.settings.Store(&d)
	if err := t.loadSettings(ctx); err != nil {
		return nil, err
	}
	if o.Redis != nil {
		t.shared = newShared(o.Redis, o.Prefix, t)
		if err := t.shared.load(ctx); err != nil {
			return nil, fmt.Errorf("resilience: load shared state: %w", err)
		}
	}
	return t, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Settings returns the current settings.
func (t *Tracker) Settings() Settings { return *t.settings.Load() }

// Shared reports whether the state is shared through Redis.
func (t *Tracker) Shared() bool { return t.shared != nil }

// Available implements router.Health.
func (t *Tracker) Available(provider, connection, model string) (bool, router.Block) {
	if t.active.Load() == 0 {
		return true, router.Block{}
	}
	now := t.clk.Now()
	s := t.settings.Load()
	t.mu.RLock()
	if c := t.cooldowns[connKey{provider, connection}]; c != nil && now.Before(c.Until) {
		b := router.Block{Until: c.Until, Status: blockStatus(c.LastStatus),
			Reason: fmt.Sprintf("connection cooling down for %s after %d consecutive failures (last status %d)",
				c.Until.Sub(now).Round(time.Millisecond), c.Failures, c.LastStatus)}
		t.mu.RUnlock()
		return false, b
	}
	if s.LockoutEnabled {
		if l := t.lockouts[modelKey{provider, connection, model}]; l != nil && now.Before(l.Until) {
			b := router.Block{Until: l.Until, Status: blockStatus(l.Status),
				Reason: fmt.Sprintf("model %s locked out on this connection for %s (status %d)", model, l.Until.Sub(now).Round(time.Millisecond), l.Status)}
			t.mu.RUnlock()
			return false, b
		}
	}
	br := t.breakers[provider]
	if br == nil || br.State == Closed {
		t.mu.RUnlock()
		return true, router.Block{}
	}
	t.mu.RUnlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	br = t.breakers[provider]
	if br == nil || br.State == Closed {
		return true, router.Block{}
	}
	if br.State == Open && now.Before(br.OpenUntil) {
		return false, router.Block{Until: br.OpenUntil, Status: http.StatusServiceUnavailable,
			Reason: fmt.Sprintf("circuit breaker of provider %s open for %s after %d consecutive failures",
				provider, br.OpenUntil.Sub(now).Round(time.Millisecond), br.Failures)}
	}
	// Open and cooled off, or half-open: one probe at a time. A probe
	// whose outcome never arrives (its client left) frees the slot after
	// another cool-off.
	if br.State == HalfOpen && now.Before(br.probeUntil) {
		return false, router.Block{Until: br.probeUntil, Status: http.StatusServiceUnavailable,
			Reason: fmt.Sprintf("circuit breaker of provider %s half-open: a probe is in flight", provider)}
	}
	br.State = HalfOpen
	br.probeUntil = now.Add(ms(s.BreakerCooloffMS))
	return true, router.Block{}
}

func blockStatus(last int) int {
	if last == http.StatusTooManyRequests {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// Observe implements router.Health.
func (t *Tracker) Observe(provider, connection, model string, status int, retryAfter time.Duration) {
	success := status >= 200 && status < 300
	if success && t.active.Load() == 0 {
		return // nothing to reset: the hot path takes no lock
	}
	s := t.settings.Load()
	now := t.clk.Now()
	ck, mk := connKey{provider, connection}, modelKey{provider, connection, model}
	if success {
		t.mu.RLock()
		br, c, l := t.breakers[provider], t.cooldowns[ck], t.lockouts[mk]
		dirty := (br != nil && (br.State != Closed || br.Failures > 0)) || c != nil || l != nil
		t.mu.RUnlock()
		if !dirty {
			return
		}
	}
	var evs []event
	var notify []events.Event
	t.mu.Lock()
	br := t.breakers[provider]
	switch {
	case BreakerTrips(status):
		if br == nil {
			br = &breaker{State: Closed}
			t.breakers[provider] = br
			t.active.Add(1)
		}
		br.Failures++
		br.LastStatus = status
		if br.State == HalfOpen || (br.State == Closed && br.Failures >= s.BreakerThreshold) {
			wasClosed := br.State == Closed
			br.State, br.OpenUntil, br.probeUntil = Open, now.Add(ms(s.BreakerCooloffMS)), time.Time{}
			evs = append(evs, breakerEvent(provider, br))
			d := BreakerEvent{Provider: provider, State: Open, Failures: br.Failures, LastStatus: status, OpenUntil: br.OpenUntil.UTC()}
			notify = append(notify, events.Event{Type: events.BreakerOpened, At: now, Data: d})
			if wasClosed {
				notify = append(notify, events.Event{Type: events.ProviderDown, At: now, Data: d})
			}
		}
	case success:
		if br != nil {
			wasOpen := br.State != Closed
			delete(t.breakers, provider)
			t.active.Add(-1)
			if wasOpen {
				evs = append(evs, event{Kind: kindBreaker, Provider: provider, State: Closed})
				notify = append(notify, events.Event{Type: events.BreakerClosed, At: now, Data: BreakerEvent{Provider: provider, State: Closed, LastStatus: status}})
			}
		}
	default:
		if br != nil && br.State == HalfOpen {
			br.probeUntil = time.Time{} // answered, neither healthy nor failing: let another probe go
		}
	}

	c := t.cooldowns[ck]
	switch {
	case CoolsDown(status) && (t.conns == nil || t.conns(provider) != 1):
		if c == nil {
			c = &cooldown{}
			t.cooldowns[ck] = c
			t.active.Add(1)
		}
		if !c.Until.IsZero() && now.Sub(c.Until) > ms(s.CooldownMaxMS) {
			c.Failures = 0 // a failure long after the last cooldown starts a new streak
		}
		c.Failures++
		c.LastStatus, c.LastAt = status, now
		d := ms(s.CooldownBaseMS)
		for i := 1; i < c.Failures && d < ms(s.CooldownMaxMS); i++ {
			d *= 2
		}
		d = max(d, retryAfter)
		d = min(d, ms(s.CooldownMaxMS))
		c.Until = now.Add(d)
		evs = append(evs, cooldownEvent(ck, c))
	case success && c != nil:
		delete(t.cooldowns, ck)
		t.active.Add(-1)
		evs = append(evs, event{Kind: kindCooldown, Provider: provider, Connection: connection})
	}

	l := t.lockouts[mk]
	switch {
	case s.LockoutEnabled && LocksOut(status):
		if l == nil {
			evs = t.makeRoom(evs, now)
			l = &lockout{}
			t.lockouts[mk] = l
			t.active.Add(1)
		}
		l.Status = status
		l.Until = now.Add(max(ms(s.LockoutMS), min(retryAfter, ms(s.CooldownMaxMS))))
		evs = append(evs, lockoutEvent(mk, l))
		if t.lockWrite++; t.lockWrite%1024 == 0 {
			evs = t.sweepLockouts(evs, now, time.Time{})
		}
	case success && l != nil:
		delete(t.lockouts, mk)
		t.active.Add(-1)
		evs = append(evs, event{Kind: kindLockout, Provider: provider, Connection: connection, Model: model})
	}
	t.mu.Unlock()
	t.publish(evs...)
	for _, e := range notify {
		t.events.Publish(context.Background(), e)
	}
}

// BreakerEvent is the data of a breaker.opened, breaker.closed or
// provider.down event.
type BreakerEvent struct {
	Provider   string    `json:"provider"`
	State      string    `json:"state"`
	Failures   int       `json:"failures,omitempty"`
	LastStatus int       `json:"lastStatus,omitempty"`
	OpenUntil  time.Time `json:"openUntil,omitzero"`
}

// makeRoom makes room for one more lockout when there are maxLockouts,
// adding the removals to evs (other replicas and the shared hash drop
// them too). The caller holds t.mu.
func (t *Tracker) makeRoom(evs []event, now time.Time) []event {
	if len(t.lockouts) < maxLockouts {
		return evs
	}
	evs = t.sweepLockouts(evs, now, time.Time{})
	if len(t.lockouts) < maxLockouts {
		return evs
	}
	ends := make([]time.Time, 0, len(t.lockouts))
	for _, l := range t.lockouts {
		ends = append(ends, l.Until)
	}
	slices.SortFunc(ends, time.Time.Compare)
	return t.sweepLockouts(evs, now, ends[len(ends)/2])
}

// sweepLockouts removes the lockouts that ended by now or end by cut,
// adding their removals to evs. The caller holds t.mu.
func (t *Tracker) sweepLockouts(evs []event, now, cut time.Time) []event {
	for k, l := range t.lockouts {
		if !now.Before(l.Until) || !l.Until.After(cut) {
			delete(t.lockouts, k)
			t.active.Add(-1)
			evs = append(evs, event{Kind: kindLockout, Provider: k.provider, Connection: k.connection, Model: k.model})
		}
	}
	return evs
}

// Wait implements router.Waiter: it waits until until when that is
// within the maximum wait counted from since and the queue has room.
func (t *Tracker) Wait(ctx context.Context, since, until time.Time) error {
	s := t.settings.Load()
	now := t.clk.Now()
	if s.QueueMaxWaitMS <= 0 || until.Sub(since) > ms(s.QueueMaxWaitMS) {
		return errors.New("recovery later than the queue's maximum wait")
	}
	if t.waiting.Add(1) > int64(s.QueueSize) {
		t.waiting.Add(-1)
		return errors.New("request queue full")
	}
	defer t.waiting.Add(-1)
	return t.sleep(ctx, max(until.Sub(now), time.Millisecond))
}

// Waiting is the number of requests in the queue.
func (t *Tracker) Waiting() int64 { return t.waiting.Load() }

// BreakerStatus is one provider's breaker.
type BreakerStatus struct {
	Provider            string     `json:"provider"`
	State               string     `json:"state"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	OpenUntil           *time.Time `json:"open_until,omitempty"`
	LastStatus          int        `json:"last_status"`
}

// Breakers lists the providers whose breaker is not plainly closed
// (open, half-open, or closed with failures counted), by provider.
func (t *Tracker) Breakers() []BreakerStatus {
	now := t.clk.Now()
	t.mu.RLock()
	out := make([]BreakerStatus, 0, len(t.breakers))
	for p, b := range t.breakers {
		st := BreakerStatus{Provider: p, State: b.State, ConsecutiveFailures: b.Failures, LastStatus: b.LastStatus}
		if b.State == Open {
			if now.Before(b.OpenUntil) {
				u := b.OpenUntil
				st.OpenUntil = &u
			} else {
				st.State = HalfOpen // the next request probes
			}
		}
		out = append(out, st)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}

// CooldownStatus is one connection's cooldown.
type CooldownStatus struct {
	Provider            string    `json:"provider"`
	Connection          string    `json:"connection"`
	Cooling             bool      `json:"cooling"`
	CoolingUntil        time.Time `json:"cooling_until"`
	RemainingMS         int64     `json:"remaining_ms"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastStatus          int       `json:"last_status"`
}

// Cooldowns lists the connections with failures since their last
// success, cooling ones first, by remaining time.
func (t *Tracker) Cooldowns() []CooldownStatus {
	now := t.clk.Now()
	t.mu.RLock()
	out := make([]CooldownStatus, 0, len(t.cooldowns))
	for k, c := range t.cooldowns {
		rem := max(c.Until.Sub(now), 0)
		out = append(out, CooldownStatus{Provider: k.provider, Connection: k.connection, Cooling: rem > 0, CoolingUntil: c.Until,
			RemainingMS: rem.Milliseconds(), ConsecutiveFailures: c.Failures, LastStatus: c.LastStatus})
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].RemainingMS != out[j].RemainingMS {
			return out[i].RemainingMS > out[j].RemainingMS
		}
		return out[i].Provider+"/"+out[i].Connection < out[j].Provider+"/"+out[j].Connection
	})
	return out
}

// LockoutStatus is one active model lockout.
type LockoutStatus struct {
	Provider    string    `json:"provider"`
	Connection  string    `json:"connection"`
	Model       string    `json:"model"`
	Until       time.Time `json:"until"`
	RemainingMS int64     `json:"remaining_ms"`
	Status      int       `json:"status"`
}

// Lockouts lists the active lockouts, soonest to end first.
func (t *Tracker) Lockouts() []LockoutStatus {
	now := t.clk.Now()
	t.mu.RLock()
	out := make([]LockoutStatus, 0, len(t.lockouts))
	for k, l := range t.lockouts {
		if now.Before(l.Until) {
			out = append(out, LockoutStatus{Provider: k.provider, Connection: k.connection, Model: k.model, Until: l.Until,
				RemainingMS: l.Until.Sub(now).Milliseconds(), Status: l.Status})
		}
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Until.Equal(out[j].Until) {
			return out[i].Until.Before(out[j].Until)
		}
		return out[i].Provider+out[i].Connection+out[i].Model < out[j].Provider+out[j].Connection+out[j].Model
	})
	return out
}

// Scope selects what a reset clears.
type Scope struct {
	Breakers, Cooldowns, Lockouts bool
	Provider                      string // "" every provider
	Model                         string // lockouts only; "" every model
}

// Reset clears the selected state here and, with Redis, on every replica;
// it returns how many entries it cleared here.
func (t *Tracker) Reset(ctx context.Context, sc Scope) int {
	n := t.reset(sc)
	t.publish(event{Kind: kindReset, Breakers: sc.Breakers, Cooldowns: sc.Cooldowns, Lockouts: sc.Lockouts,
		Provider: sc.Provider, Model: sc.Model})
	return n
}

func (t *Tracker) reset(sc Scope) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	if sc.Breakers {
		for p := range t.breakers {
			if sc.Provider == "" || p == sc.Provider {
				delete(t.breakers, p)
				n++
			}
		}
	}
	if sc.Cooldowns {
		for k := range t.cooldowns {
			if sc.Provider == "" || k.provider == sc.Provider {
				delete(t.cooldowns, k)
				n++
			}
		}
	}
	if sc.Lockouts {
		for k := range t.lockouts {
			if (sc.Provider == "" || k.provider == sc.Provider) && (sc.Model == "" || k.model == sc.Model) {
				delete(t.lockouts, k)
				n++
			}
		}
	}
	t.active.Add(int64(-n))
	return n
}
