// Package session implements edge.SessionStore for browser logins: Memory
// for one process and Redis so that the browser and the client's WebSocket
// may reach different replicas.
package session

import (
	"context"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge"
	"github.com/omniedge/omni/internal/platform/clock"
)

// Memory keeps sessions in a map; expired ones are swept on each Create.
type Memory struct {
	clock clock.Clock
	mu    sync.Mutex
	m     map[string]*memSession
}

type memSession struct {
	expires   time.Time
	tokens    *edge.TokenPair
	delivered bool
	done      chan struct{} // closed when tokens arrive
}

var _ edge.SessionStore = (*Memory)(nil)

// NewMemory returns an empty store.
func NewMemory(clk clock.Clock) *Memory {
	return &Memory{clock: clk, m: make(map[string]*memSession)}
}

func (s *Memory) live(id string) (*memSession, bool) {
	v, ok := s.m[id]
	if !ok || v.delivered || !s.clock.Now().Before(v.expires) {
		return nil, false
	}
	return v, true
}

func (s *Memory) Create(_ context.Context, id string, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	for k, v := range s.m {
		if !now.Before(v.expires) || v.delivered {
			delete(s.m, k)
		}
	}
	if _, ok := s.m[id]; ok {
		return edge.ErrConflict
	}
	s.m[id] = &memSession{expires: expires, done: make(chan struct{})}
	return nil
}

func (s *Memory) Pending(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(id)
	return ok && v.tokens == nil, nil
}

func (s *Memory) Complete(_ context.Context, id string, t edge.TokenPair) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(id)
	if !ok {
		return edge.ErrNotFound
	}
	if v.tokens != nil {
		return edge.ErrConflict
	}
	v.tokens = &t
	close(v.done)
	return nil
}

func (s *Memory) Wait(ctx context.Context, id string) (edge.TokenPair, error) {
	s.mu.Lock()
	v, ok := s.live(id)
	s.mu.Unlock()
	if !ok {
		return edge.TokenPair{}, edge.ErrNotFound
	}
	wait := v.expires.Sub(s.clock.Now())
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-v.done:
	case <-timer.C:
		return edge.TokenPair{}, edge.ErrNotFound
	case <-ctx.Done():
		return edge.TokenPair{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.delivered {
		return edge.TokenPair{}, edge.ErrNotFound
	}
	v.delivered = true
	return *v.tokens, nil
}
