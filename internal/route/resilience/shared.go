package resilience

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/redisx"
)

// Event kinds: state changes one replica tells the others.
const (
	kindBreaker  = "breaker"
	kindCooldown = "cooldown"
	kindLockout  = "lockout"
	kindReset    = "reset"
	kindSettings = "settings"
)

// event is one state change. Entries carry their whole state, so
// applying one is idempotent and the last writer wins; an entry without
// an end (Until zero, or breaker State closed) is a removal.
type event struct {
	From       string `json:"from,omitempty"`
	Kind       string `json:"kind"`
	Provider   string `json:"provider,omitempty"`
	Connection string `json:"connection,omitempty"`
	Model      string `json:"model,omitempty"`
	State      string `json:"state,omitempty"`
	Failures   int    `json:"failures,omitempty"`
	Status     int    `json:"status,omitempty"`
	UntilMS    int64  `json:"until_ms,omitempty"`
	LastAtMS   int64  `json:"last_at_ms,omitempty"`
	// reset
	Breakers  bool `json:"breakers,omitempty"`
	Cooldowns bool `json:"cooldowns,omitempty"`
	Lockouts  bool `json:"lockouts,omitempty"`
}

func msTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func breakerEvent(provider string, b *breaker) event {
	return event{Kind: kindBreaker, Provider: provider, State: b.State, Failures: b.Failures, Status: b.LastStatus, UntilMS: unixMS(b.OpenUntil)}
}

func cooldownEvent(k connKey, c *cooldown) event {
	return event{Kind: kindCooldown, Provider: k.provider, Connection: k.connection, Failures: c.Failures, Status: c.LastStatus,
		UntilMS: unixMS(c.Until), LastAtMS: unixMS(c.LastAt)}
}

func lockoutEvent(k modelKey, l *lockout) event {
	return event{Kind: kindLockout, Provider: k.provider, Connection: k.connection, Model: k.model, Status: l.Status, UntilMS: unixMS(l.Until)}
}

// field is the entry's name in the shared hash ("" for events that are
// not entries).
func (e event) field() string {
	switch e.Kind {
	case kindBreaker:
		return "b\x00" + e.Provider
	case kindCooldown:
		return "c\x00" + e.Provider + "\x00" + e.Connection
	case kindLockout:
		return "l\x00" + e.Provider + "\x00" + e.Connection + "\x00" + e.Model
	}
	return ""
}

func (e event) removal() bool {
	if e.Kind == kindBreaker {
		return e.State == Closed
	}
	return e.UntilMS == 0
}

// shared mirrors state changes through Redis: a hash holds the current
// entries (read at start), a channel carries every change. Changes are
// written only on transitions (a trip, a cooldown, a reset), never on an
// ordinary success, so the hot path makes no Redis round trip.
type shared struct {
	rdb     *redis.Client
	id      string
	hash    string
	channel string
	t       *Tracker
}

func newShared(rdb *redis.Client, prefix string, t *Tracker) *shared {
	return &shared{rdb: rdb, id: auth.RandomToken("", 9), hash: prefix + "resilience:state", channel: prefix + "resilience:events", t: t}
}

// load applies the entries other replicas left.
func (s *shared) load(ctx context.Context) error {
	all, err := s.rdb.HGetAll(ctx, s.hash).Result()
	if err != nil {
		return err
	}
	now := s.t.clk.Now()
	for _, v := range all {
		var e event
		if json.Unmarshal([]byte(v), &e) != nil {
			continue
		}
		if e.Kind != kindLockout || msTime(e.UntilMS).After(now) {
			s.t.apply(e)
		}
	}
	return nil
}

func (t *Tracker) publish(evs ...event) {
	if t.shared == nil || len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := t.shared.send(ctx, evs); err != nil {
		t.log.Warn("resilience: sharing state failed", "err", err)
	}
}

func (s *shared) send(ctx context.Context, evs []event) error {
	pipe := s.rdb.Pipeline()
	for _, e := range evs {
		e.From = s.id
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		switch {
		case e.Kind == kindReset && !e.Breakers && !e.Cooldowns && !e.Lockouts:
		case e.Kind == kindReset && e.Provider == "" && e.Model == "" && e.Breakers && e.Cooldowns && e.Lockouts:
			pipe.Del(ctx, s.hash)
		case e.Kind == kindReset:
			// The hash is small (one entry per troubled connection):
			// clearing a part of it reads it.
			if err := s.resetHash(ctx, e); err != nil {
				return err
			}
		case e.field() == "":
		case e.removal():
			pipe.HDel(ctx, s.hash, e.field())
		default:
			pipe.HSet(ctx, s.hash, e.field(), b)
		}
		pipe.Publish(ctx, s.channel, b)
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (s *shared) resetHash(ctx context.Context, r event) error {
	all, err := s.rdb.HGetAll(ctx, s.hash).Result()
	if err != nil {
		return err
	}
	var drop []string
	for f, v := range all {
		var e event
		if json.Unmarshal([]byte(v), &e) != nil || r.clears(e) {
			drop = append(drop, f)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	return s.rdb.HDel(ctx, s.hash, drop...).Err()
}

// clears reports whether reset event r removes entry e.
func (r event) clears(e event) bool {
	if r.Provider != "" && e.Provider != r.Provider {
		return false
	}
	switch e.Kind {
	case kindBreaker:
		return r.Breakers
	case kindCooldown:
		return r.Cooldowns
	case kindLockout:
		return r.Lockouts && (r.Model == "" || e.Model == r.Model)
	}
	return false
}

// Run follows the other replicas' changes until ctx ends. Without Redis
// it returns at once.
func (t *Tracker) Run(ctx context.Context) error {
	if t.shared == nil {
		return nil
	}
	return t.shared.run(ctx)
}

func (s *shared) run(ctx context.Context) error {
	return redisx.Follow(ctx, s.rdb, s.channel, redisx.Follower{
		// Changes made while unsubscribed are in the hash.
		OnSubscribed: func(ctx context.Context) {
			if err := s.load(ctx); err != nil && ctx.Err() == nil {
				s.t.log.Warn("resilience: load shared state failed", "err", err)
			}
		},
		OnMessage: func(payload string) {
			var e event
			if json.Unmarshal([]byte(payload), &e) != nil || e.From == s.id {
				return
			}
			s.t.applyRemote(ctx, e)
		},
		Ready: &s.t.subscribed,
	})
}

// Ready reports whether the Tracker follows other replicas (always true
// without Redis).
func (t *Tracker) Ready() bool { return t.shared == nil || t.subscribed.Load() }

func (t *Tracker) applyRemote(ctx context.Context, e event) {
	switch e.Kind {
	case kindSettings:
		if err := t.loadSettings(ctx); err != nil {
			t.log.Warn("resilience: reload settings failed", "err", err)
		}
	case kindReset:
		t.reset(Scope{Breakers: e.Breakers, Cooldowns: e.Cooldowns, Lockouts: e.Lockouts, Provider: e.Provider, Model: e.Model})
	default:
		t.apply(e)
	}
}

// apply installs or removes one entry.
func (t *Tracker) apply(e event) {
	var evs []event // lockouts dropped to make room, which every replica drops
	defer func() { t.publish(evs...) }()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch e.Kind {
	case kindBreaker:
		var b *breaker
		if !e.removal() {
			b = &breaker{State: e.State, Failures: e.Failures, LastStatus: e.Status, OpenUntil: msTime(e.UntilMS)}
		}
		put(t, t.breakers, e.Provider, b)
	case kindCooldown:
		var c *cooldown
		if !e.removal() {
			c = &cooldown{Failures: e.Failures, LastStatus: e.Status, Until: msTime(e.UntilMS), LastAt: msTime(e.LastAtMS)}
		}
		put(t, t.cooldowns, connKey{e.Provider, e.Connection}, c)
	case kindLockout:
		var l *lockout
		if !e.removal() {
			l = &lockout{Status: e.Status, Until: msTime(e.UntilMS)}
			if _, had := t.lockouts[modelKey{e.Provider, e.Connection, e.Model}]; !had {
				evs = t.makeRoom(evs, t.clk.Now())
			}
		}
		put(t, t.lockouts, modelKey{e.Provider, e.Connection, e.Model}, l)
	}
}

// put installs v under k in m, or removes k when v is nil, keeping the
// count of active entries. The caller holds t.mu.
func put[K comparable, V any](t *Tracker, m map[K]*V, k K, v *V) {
	_, had := m[k]
	switch {
	case v != nil:
		if !had {
			t.active.Add(1)
		}
		m[k] = v
	case had:
		delete(m, k)
		t.active.Add(-1)
	}
}

// ---- settings ----

func (t *Tracker) loadSettings(ctx context.Context) error {
	if t.store == nil {
		return nil
	}
	v, ok, err := t.store.Setting(ctx, SettingKey)
	if err != nil || !ok {
		return err
	}
	s := Defaults()
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return fmt.Errorf("resilience: stored settings: %w", err)
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("resilience: stored settings: %w", err)
	}
	t.settings.Store(&s)
	return nil
}

// SetSettings validates, stores and applies s here and, with Redis, on
// every replica.
func (t *Tracker) SetSettings(ctx context.Context, s Settings) error {
	if err := s.Validate(); err != nil {
		return &InvalidError{err}
	}
	if t.store != nil {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if err := t.store.SetSetting(ctx, SettingKey, string(b)); err != nil {
			return err
		}
	}
	t.settings.Store(&s)
	t.publish(event{Kind: kindSettings})
	return nil
}

// InvalidError is a rejected setting.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }
