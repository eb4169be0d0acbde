package control

import (
	"context"
	"errors"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
)

// Options are the tunables of a Service.
type Options struct {
	Plans           map[string]config.PlanLimit
	OnlineWindow    time.Duration
	PresenceFlush   time.Duration
	EpochPoll       time.Duration // how often other replicas' writes are noticed
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	SessionTTL      time.Duration
	MaxRangeBits    int    // smallest prefix length of an explicit range (16: at most a /16)
	DNSSuffix       string // the devices' names are <device>.<network>.<suffix>; default omni.internal
	// KeyCheckMax is how long Run's key-expiry loop sleeps at most
	// between two looks at the next key to expire (default
	// DefaultKeyCheckMax); it normally wakes when that key expires.
	KeyCheckMax time.Duration
}

// DefaultOptions mirror config.Default.
func DefaultOptions() Options {
	d := config.Default()
	return OptionsFrom(&d)
}

// OptionsFrom takes the service options out of a configuration.
func OptionsFrom(c *config.Config) Options {
	return Options{
		Plans:           c.Plans,
		OnlineWindow:    c.OnlineWindow,
		PresenceFlush:   c.PresenceFlush,
		EpochPoll:       time.Second,
		AccessTokenTTL:  c.AccessTokenTTL,
		RefreshTokenTTL: c.RefreshTokenTTL,
		SessionTTL:      c.SessionTTL,
		MaxRangeBits:    c.NetworkMaxRange,
		DNSSuffix:       c.DNSSuffix,
		KeyCheckMax:     DefaultKeyCheckMax,
	}
}

// Deps are the collaborators of a Service.
type Deps struct {
	Store     Store
	Presence  PresenceStore
	Sessions  SessionStore
	Revoked   RevocationSet // nil: an in-process set (one replica)
	Clock     clock.Clock
	Log       *slog.Logger
	MasterKey []byte // 32 bytes; JWT, sealing and approval keys derive from it
	// Events tells every nucleus (of every replica) about networks whose
	// secret, members or member keys changed; nil tells none.
	Events NetworkEvents
}

// Service is the control-plane coordinator: every state change of the edge
// product goes through it.
type Service struct {
	store    Store
	presence PresenceStore
	sessions SessionStore
	revoked  RevocationSet
	events   NetworkEvents
	clock    clock.Clock
	log      *slog.Logger
	opts     Options
	signer   *auth.Signer
	sealer   *auth.Sealer
	approval []byte
	dashKey  []byte // signs dashboard session cookies

	epoch     atomic.Uint64 // local cache generation
	lastStore atomic.Int64  // last store epoch seen
	cache     devCache
	dirty     dirtySet
	flushMu   sync.Mutex
	watch     watchers // waits on networks' names (Watch)
	keys      keyClock // the key-expiry loop's state (ExpireKeys)
}

// New builds a Service.
func New(d Deps, o Options) (*Service, error) {
	if d.Store == nil || d.Presence == nil || d.Sessions == nil || d.Clock == nil || d.Log == nil {
		return nil, errors.New("edge: incomplete dependencies")
	}
	if o.DNSSuffix == "" {
		o.DNSSuffix = "omni.internal"
	}
	if len(d.MasterKey) != 32 {
		return nil, errors.New("edge: master key must be 32 bytes")
	}
	signer, err := auth.NewSigner(auth.DeriveKey(d.MasterKey, "omni/edge/jwt/v1"), "omni-edge", "omni-edge-api")
	if err != nil {
		return nil, err
	}
	sealer, err := auth.NewSealer(auth.DeriveKey(d.MasterKey, "omni/edge/seal/v1"))
	if err != nil {
		return nil, err
	}
	if o.MaxRangeBits <= 0 {
		o.MaxRangeBits = 16
	}
	if o.EpochPoll <= 0 {
		o.EpochPoll = time.Second
	}
	if o.KeyCheckMax <= 0 {
		o.KeyCheckMax = DefaultKeyCheckMax
	}
	s := &Service{
		store: d.Store, presence: d.Presence, sessions: d.Sessions, revoked: d.Revoked, events: d.Events, clock: d.Clock, log: d.Log, opts: o,
		signer: signer, sealer: sealer, approval: auth.DeriveKey(d.MasterKey, "omni/edge/approval/v1"),
		dashKey: auth.DeriveKey(d.MasterKey, "omni/edge/dashboard-cookie/v1"),
	}
	if s.revoked == nil {
		s.revoked = NewLocalRevocations()
	}
	s.cache.init()
	s.dirty.init()
	s.epoch.Store(1)
	s.keys.last, s.keys.kick = s.now(), make(chan struct{}, 1)
	return s, nil
}

// Run performs the background work — flushing presence to the store,
// noticing other replicas' writes and announcing the networks whose
// members' keys expire (ExpireKeys) — until ctx ends, then flushes once
// more.
func (s *Service) Run(ctx context.Context) error {
	kctx, stopKeys := context.WithCancel(ctx)
	keysDone := make(chan struct{})
	go func() { defer close(keysDone); s.runKeys(kctx) }()
	defer func() { stopKeys(); <-keysDone }()
	// A revocation set shared with other replicas follows them meanwhile.
	if r, ok := s.revoked.(interface{ Run(context.Context) error }); ok {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := r.Run(rctx); err != nil && rctx.Err() == nil {
				s.log.Error("revocation follower stopped", "err", err)
			}
		}()
		defer func() { cancel(); <-done }()
	}
	flush := time.NewTicker(s.opts.PresenceFlush)
	defer flush.Stop()
	poll := time.NewTicker(s.opts.EpochPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.Flush(fctx)
			cancel()
			return err
		case <-flush.C:
			if sw, ok := s.revoked.(interface{ Sweep(time.Time) }); ok {
				sw.Sweep(s.clock.Now())
			}
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("presence flush failed", "err", err)
			}
		case <-poll.C:
			if err := s.PollEpoch(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("epoch poll failed", "err", err)
			}
		}
	}
}

// Flush writes the heartbeats received since the last flush to the store.
func (s *Service) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	batch := s.dirty.drain()
	if len(batch) == 0 {
		return nil
	}
	if err := s.store.FlushPresence(ctx, batch); err != nil {
		s.dirty.restore(batch)
		return err
	}
	return nil
}

// PollEpoch drops cached heartbeat views when another replica changed
// memberships or exit nodes.
func (s *Service) PollEpoch(ctx context.Context) error {
	v, err := s.store.Epoch(ctx)
	if err != nil {
		return err
	}
	if old := s.lastStore.Swap(v); old != v {
		s.invalidate()
	}
	return nil
}

// invalidate drops the cached heartbeat views; what changed may be a key,
// a member or a lifetime, so the key-expiry loop looks again.
func (s *Service) invalidate() {
	s.epoch.Add(1)
	s.kickKeys()
}

func (s *Service) now() time.Time { return s.clock.Now().UTC() }

func (s *Service) planLimit(plan string) config.PlanLimit { return s.opts.Plans[plan] }

// validPlan reports whether plan is configured.
func (s *Service) validPlan(plan string) bool {
	_, ok := s.opts.Plans[plan]
	return ok
}

// ---- shared helpers ----

func cleanName(kind, name string, max int) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errorf(KindInvalid, "%s name is required", kind)
	}
	if len(name) > max {
		return "", errorf(KindInvalid, "%s name is longer than %d bytes", kind, max)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", errorf(KindInvalid, "%s name contains control characters", kind)
		}
	}
	return name, nil
}

func validEmail(email string) (string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || len(email) > 254 {
		return "", errorf(KindInvalid, "email %q is not a valid address", email)
	}
	return email, nil
}

func newID(prefix string) string { return auth.RandomToken(prefix, 12) }

// PlanLimit returns the limits of a plan.
func (s *Service) PlanLimit(plan string) config.PlanLimit { return s.planLimit(plan) }
