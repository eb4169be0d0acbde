// Package session implements the login-session state replicas share:
// control.SessionStore for browser logins (Memory for one process, Redis so
// that the browser and the client's WebSocket may reach different
// replicas, woken through one shared Pub/Sub subscription) and the Redis
// control.RevocationSet, which keeps a local copy of the revoked login
// sessions current on every replica.
package session

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
)

// Limits cap the live (pending or approved, not yet delivered) sessions.
type Limits struct {
	PerIP int // per client IP (an IPv6 client's /64: ipam.Source)
	Total int // in the whole store
}

// DefaultLimits match the configuration defaults.
var DefaultLimits = Limits{PerIP: 32, Total: 10000}

// Memory keeps sessions in a map. Expiry is kept in a min-heap, so Create
// drops expired sessions in O(log n) each instead of sweeping them all.
type Memory struct {
	clock clock.Clock
	lim   Limits
	mu    sync.Mutex
	m     map[string]*memSession
	perIP map[string]int
	exp   expiryHeap
}

type memSession struct {
	id        string
	req       control.LoginRequest
	tokens    *control.TokenPair
	delivered bool
	waiting   bool
	done      chan struct{} // closed when tokens arrive
}

var _ control.SessionStore = (*Memory)(nil)

// NewMemory returns an empty store with DefaultLimits.
func NewMemory(clk clock.Clock) *Memory { return NewMemoryLimited(clk, DefaultLimits) }

// NewMemoryLimited returns an empty store with the given caps.
func NewMemoryLimited(clk clock.Clock, lim Limits) *Memory {
	return &Memory{clock: clk, lim: lim, m: make(map[string]*memSession), perIP: make(map[string]int)}
}

func (s *Memory) live(id string) (*memSession, bool) {
	v, ok := s.m[id]
	if !ok || v.delivered || !s.clock.Now().Before(v.req.Expires) {
		return nil, false
	}
	return v, true
}

// drop forgets a session and its place in the caps.
func (s *Memory) drop(v *memSession) {
	if s.m[v.id] != v {
		return
	}
	delete(s.m, v.id)
	src := ipam.SourceString(v.req.ClientIP)
	if n := s.perIP[src] - 1; n > 0 {
		s.perIP[src] = n
	} else {
		delete(s.perIP, src)
	}
}

// expire drops the sessions whose time is up.
func (s *Memory) expire(now time.Time) {
	for len(s.exp) > 0 && !now.Before(s.exp[0].req.Expires) {
		v := heap.Pop(&s.exp).(*memSession)
		s.drop(v)
	}
}

// Len returns the number of sessions held (live or not yet swept).
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *Memory) Create(_ context.Context, id string, req control.LoginRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.expire(now)
	if _, ok := s.m[id]; ok {
		return control.ErrConflict
	}
	if !now.Before(req.Expires) {
		return nil // already expired: nothing to keep
	}
	src := ipam.SourceString(req.ClientIP)
	if (s.lim.PerIP > 0 && s.perIP[src] >= s.lim.PerIP) || (s.lim.Total > 0 && len(s.m) >= s.lim.Total) {
		return control.ErrLimit
	}
	v := &memSession{id: id, req: req, done: make(chan struct{})}
	s.m[id] = v
	s.perIP[src]++
	heap.Push(&s.exp, v)
	return nil
}

func (s *Memory) Pending(_ context.Context, id string) (control.LoginRequest, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(id)
	if !ok || v.tokens != nil {
		return control.LoginRequest{}, false, nil
	}
	return v.req, true, nil
}

func (s *Memory) Complete(_ context.Context, id string, t control.TokenPair) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(id)
	if !ok {
		return control.ErrNotFound
	}
	if v.tokens != nil {
		return control.ErrConflict
	}
	v.tokens = &t
	close(v.done)
	return nil
}

func (s *Memory) Wait(ctx context.Context, id string) (control.TokenPair, error) {
	s.mu.Lock()
	v, ok := s.live(id)
	if ok && v.waiting {
		s.mu.Unlock()
		return control.TokenPair{}, control.ErrConflict
	}
	if ok {
		v.waiting = true
	}
	s.mu.Unlock()
	if !ok {
		return control.TokenPair{}, control.ErrNotFound
	}
	defer func() {
		s.mu.Lock()
		v.waiting = false
		s.mu.Unlock()
	}()
	timer := time.NewTimer(v.req.Expires.Sub(s.clock.Now()))
	defer timer.Stop()
	select {
	case <-v.done:
	case <-timer.C:
		return control.TokenPair{}, control.ErrNotFound
	case <-ctx.Done():
		return control.TokenPair{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.delivered {
		return control.TokenPair{}, control.ErrNotFound
	}
	v.delivered = true
	s.drop(v)
	return *v.tokens, nil
}

// expiryHeap orders sessions by expiry.
type expiryHeap []*memSession

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].req.Expires.Before(h[j].req.Expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*memSession)) }
func (h *expiryHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return v
}
