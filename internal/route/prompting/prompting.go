package prompting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// Store is the part of the route store the settings live in.
type Store interface {
	Setting(ctx context.Context, key string) (value string, ok bool, err error)
	// CompareAndSwapSetting replaces key's value with value only when it
	// is old ("" also matching an unset key).
	CompareAndSwapSetting(ctx context.Context, key, old, value string) (swapped bool, err error)
}

// Options configure a Service.
type Options struct {
	Store Store
	Log   *slog.Logger
	// Sync is how often the stored settings are read again, so that a
	// change made on another replica applies here; 500 ms when 0.
	Sync time.Duration
}

// Service holds the settings and rewrites requests by them
// (pipeline.Rewriter). Safe for concurrent use.
type Service struct {
	store Store
	log   *slog.Logger
	sync  time.Duration
	cur   atomic.Pointer[state]
}

// state is one immutable view of both settings.
type state struct {
	prompt   SystemPrompt
	excluded map[string]bool
	part     llm.Part // the prompt as a system part
	budget   ThinkingBudget
	efforts  *llm.EffortBudgets // nil when the mapping is the default
}

func newState(sp SystemPrompt, tb ThinkingBudget) *state {
	st := &state{prompt: sp, budget: tb, excluded: make(map[string]bool, len(sp.ExcludeKeys)),
		part: llm.Part{Type: llm.PartText, Text: sp.Prompt}}
	for _, k := range sp.ExcludeKeys {
		st.excluded[k] = true
	}
	if tb.Efforts != llm.DefaultEffortBudgets() {
		e := tb.Efforts
		st.efforts = &e
	}
	return st
}

// New returns a Service with the default settings; Load reads the
// stored ones.
func New(o Options) *Service {
	s := &Service{store: o.Store, log: o.Log, sync: o.Sync}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.sync <= 0 {
		s.sync = 500 * time.Millisecond
	}
	s.cur.Store(newState(DefaultSystemPrompt(), DefaultThinkingBudget()))
	return s
}

// SystemPrompt returns the system prompt setting in force here.
func (s *Service) SystemPrompt() SystemPrompt {
	sp := s.cur.Load().prompt
	sp.ExcludeKeys = append([]string{}, sp.ExcludeKeys...)
	return sp
}

// ThinkingBudget returns the thinking budget setting in force here.
func (s *Service) ThinkingBudget() ThinkingBudget { return s.cur.Load().budget }

// Load reads both settings from the store and puts them in force.
func (s *Service) Load(ctx context.Context) error {
	sp, _, err := s.readPrompt(ctx)
	if err != nil {
		return err
	}
	tb, _, err := s.readBudget(ctx)
	if err != nil {
		return err
	}
	next := newState(sp, tb)
	if cur := s.cur.Load(); equalState(cur, next) {
		return nil
	}
	s.cur.Store(next)
	return nil
}

func equalState(a, b *state) bool {
	ab, _ := json.Marshal([]any{a.prompt, a.budget})
	bb, _ := json.Marshal([]any{b.prompt, b.budget})
	return string(ab) == string(bb)
}

// Run reads the stored settings every Options.Sync until ctx ends, so
// that every replica applies a change within a second.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.sync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Load(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reading the system prompt and thinking budget settings failed", "err", err)
			}
		}
	}
}

// readPrompt returns the stored system prompt (the default when unset)
// and the stored text it came from.
func (s *Service) readPrompt(ctx context.Context) (SystemPrompt, string, error) {
	sp := DefaultSystemPrompt()
	raw, err := s.read(ctx, SettingSystemPrompt, &sp)
	if err == nil {
		err = sp.Validate()
	}
	if err != nil {
		return sp, raw, fmt.Errorf("prompting: stored %s: %w", SettingSystemPrompt, err)
	}
	sp.normalize()
	return sp, raw, nil
}

// readBudget returns the stored thinking budget (the default when unset)
// and the stored text it came from.
func (s *Service) readBudget(ctx context.Context) (ThinkingBudget, string, error) {
	tb := DefaultThinkingBudget()
	raw, err := s.read(ctx, SettingThinkingBudget, &tb)
	if err == nil {
		err = tb.Validate()
	}
	if err != nil {
		return tb, raw, fmt.Errorf("prompting: stored %s: %w", SettingThinkingBudget, err)
	}
	return tb, raw, nil
}

func (s *Service) read(ctx context.Context, key string, v any) (string, error) {
	raw, ok, err := s.store.Setting(ctx, key)
	if err != nil || !ok || raw == "" {
		return raw, err
	}
	return raw, json.Unmarshal([]byte(raw), v)
}

// InvalidError is a setting refused for its value.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// ErrConflict is returned when the setting kept changing on other
// replicas while it was being updated.
var ErrConflict = errors.New("prompting: the setting changed concurrently; try again")

// UpdateSystemPrompt changes the stored system prompt with change
// (applied to the stored value), validates and stores the result and
// puts it in force here at once; other replicas follow within a second.
func (s *Service) UpdateSystemPrompt(ctx context.Context, change func(*SystemPrompt)) (SystemPrompt, error) {
	var out SystemPrompt
	err := s.update(ctx, SettingSystemPrompt, func(ctx context.Context) (string, any, error) {
		sp, raw, err := s.readPrompt(ctx)
		if err != nil {
			return "", nil, err
		}
		change(&sp)
		if err := sp.Validate(); err != nil {
			return "", nil, &InvalidError{err}
		}
		sp.normalize()
		out = sp
		return raw, sp, nil
	})
	if err != nil {
		return out, err
	}
	cur := s.cur.Load()
	s.cur.Store(newState(out, cur.budget))
	return out, nil
}

// UpdateThinkingBudget is UpdateSystemPrompt for the thinking budget.
func (s *Service) UpdateThinkingBudget(ctx context.Context, change func(*ThinkingBudget)) (ThinkingBudget, error) {
	var out ThinkingBudget
	err := s.update(ctx, SettingThinkingBudget, func(ctx context.Context) (string, any, error) {
		tb, raw, err := s.readBudget(ctx)
		if err != nil {
			return "", nil, err
		}
		change(&tb)
		if err := tb.Validate(); err != nil {
			return "", nil, &InvalidError{err}
		}
		out = tb
		return raw, tb, nil
	})
	if err != nil {
		return out, err
	}
	cur := s.cur.Load()
	s.cur.Store(newState(cur.prompt, out))
	return out, nil
}

// update stores what next makes of the stored value of key, unless
// another writer changed it meanwhile (then it tries again, three times
// at most).
func (s *Service) update(ctx context.Context, key string, next func(context.Context) (old string, v any, err error)) error {
	for range 3 {
		old, v, err := next(ctx)
		if err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		ok, err := s.store.CompareAndSwapSetting(ctx, key, old, string(b))
		if err != nil || ok {
			return err
		}
	}
	return ErrConflict
}

// Rewrite applies the settings to req (pipeline.Rewriter): the system
// prompt unless keyID opted out, the thinking budget's mode and mapping
// to a request that has reasoning. It returns req itself when nothing
// applies, else a changed copy; req is never changed.
func (s *Service) Rewrite(_ context.Context, keyID string, req *llm.Request) *llm.Request {
	st := s.cur.Load()
	inject := st.prompt.Enabled && !st.excluded[keyID]
	rs := req.Reasoning
	if !inject && (rs == nil || st.efforts == nil && (!rs.Enabled || st.budget.Mode == Passthrough)) {
		return req
	}
	out := *req
	if inject {
		sys := make([]llm.Part, 0, len(req.System)+1)
		if st.prompt.Mode == Append {
			sys = append(append(sys, req.System...), st.part)
		} else {
			sys = append(append(sys, st.part), req.System...)
		}
		out.System = sys
	}
	if rs != nil {
		if st.efforts != nil {
			out.EffortBudgets = st.efforts
		}
		if rs.Enabled && (st.budget.Mode == Force || st.budget.Mode == Default && rs.BudgetTokens <= 0 && rs.Effort == "") {
			r := *rs
			r.BudgetTokens = st.budget.DefaultBudget
			r.Effort = st.budget.Efforts.Effort(r.BudgetTokens)
			out.Reasoning = &r
		}
	}
	return &out
}
