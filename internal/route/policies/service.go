package policies

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// Resolver answers where a model name leads now (the routing table).
type Resolver interface {
	Resolve(model string) ([]router.Target, string, error)
}

// Options configure a Service.
type Options struct {
	Store    *Store
	Resolver Resolver
	// Known reports whether a provider id exists (a policy naming
	// another is refused).
	Known func(id string) bool
	// SyncInterval is how often Run checks whether another replica
	// changed the policies (default 1s).
	SyncInterval time.Duration
	Clock        clock.Clock
	Log          *slog.Logger
}

// Service holds the policies in force and applies them.
type Service struct {
	opt Options

	mu    sync.Mutex // serialises loads
	epoch int64      // the route store's epoch the rules were read at
	rules atomic.Pointer[rules]
}

// New returns the service; call Load before serving.
func New(opt Options) (*Service, error) {
	if opt.Store == nil || opt.Resolver == nil || opt.Known == nil {
		return nil, errors.New("policies: Store, Resolver and Known are required")
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = time.Second
	}
	s := &Service{opt: opt}
	s.rules.Store(&rules{})
	return s, nil
}

// Load reads the policies and installs them.
func (s *Service) Load(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.opt.Store.Epoch(ctx)
	if err != nil {
		return err
	}
	ps, err := s.opt.Store.List(ctx)
	if err != nil {
		return err
	}
	rs := compile(ps)
	s.rules.Store(&rs)
	s.epoch = e
	return nil
}

// Run installs the changes other replicas make, checking the route
// store's epoch every SyncInterval, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opt.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e, err := s.opt.Store.Epoch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.opt.Log.Warn("routing policies: epoch check failed", "err", err)
				}
				continue
			}
			s.mu.Lock()
			stale := e != s.epoch
			s.mu.Unlock()
			if stale {
				if err := s.Load(ctx); err != nil && ctx.Err() == nil {
					s.opt.Log.Warn("routing policies: reload failed", "err", err)
				}
			}
		}
	}
}

func (s *Service) current() rules { return *s.rules.Load() }

var (
	_ pipeline.Gate        = (*Service)(nil)
	_ pipeline.ModelPolicy = (*Service)(nil)
)

// Admit implements pipeline.Gate: a call whose model name is blocked, or
// all of whose targets a policy forbids, is refused with 403 naming the
// policy; otherwise the router tries only the targets no policy forbids
// (router.WithFilter), falling back past the others. It counts nothing.
func (s *Service) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	f, err := s.judge(c.KeyID, c.Model)
	if err != nil || f == nil {
		return ctx, nil, err
	}
	return router.WithFilter(ctx, f), nil, nil
}

// Permits implements pipeline.ModelPolicy: Admit's judgement, for the
// endpoints that ask without running a call.
func (s *Service) Permits(_ context.Context, keyID, model string) error {
	_, err := s.judge(keyID, model)
	return err
}

func (s *Service) judge(keyID, model string) (router.Filter, error) {
	rs := s.current().forKey(keyID)
	if len(rs) == 0 {
		return nil, nil
	}
	targets, _, _ := s.opt.Resolver.Resolve(model) // unknown: the router answers 404
	return rs.judge(model, targets)
}

// Listed reports whether a model id appears in the model lists: not when
// a policy applying to every request blocks its name or forbids every
// target it leads to. Policies of some keys only do not hide models
// (the lists are the same for every key).
func (s *Service) Listed(id string) bool {
	rs := s.current().globals()
	if len(rs) == 0 {
		return true
	}
	targets, _, _ := s.opt.Resolver.Resolve(id)
	_, err := rs.judge(id, targets)
	return err == nil
}
