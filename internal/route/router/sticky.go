package router

import (
	"context"
	"slices"
	"sync"
	"time"
)

type sessionKey struct{}

// WithSession marks ctx with a client session id (X-Session-Id): its
// requests keep going to the target and connection that last served them,
// while those stay healthy.
func WithSession(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, id)
}

func sessionOf(ctx context.Context) string {
	s, _ := ctx.Value(sessionKey{}).(string)
	return s
}

// SessionTTL is how long a session stays pinned after its last request.
const SessionTTL = 30 * time.Minute

type pin struct {
	target, connection string
	until              time.Time
}

// maxPins bounds the pinned sessions: session ids are the client's to
// choose.
const maxPins = 8192

// pins maps session ids to where they were last served. Expired entries
// are swept every 1024 writes, so memory follows the live sessions; at
// maxPins the least recently used half goes.
type pins struct {
	mu     sync.Mutex
	m      map[string]pin
	writes int
}

func (p *pins) get(id string, now time.Time) (pin, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[id]
	if !ok || now.After(v.until) {
		return pin{}, false
	}
	return v, true
}

func (p *pins) set(id string, v pin, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]pin{}
	}
	if _, ok := p.m[id]; !ok && len(p.m) >= maxPins {
		p.sweep(now)
		if len(p.m) >= maxPins {
			// A pin lasts SessionTTL from its last use: the earliest
			// ends are the least recently used sessions.
			ends := make([]time.Time, 0, len(p.m))
			for _, e := range p.m {
				ends = append(ends, e.until)
			}
			slices.SortFunc(ends, time.Time.Compare)
			cut := ends[len(ends)/2]
			for k, e := range p.m {
				if !e.until.After(cut) {
					delete(p.m, k)
				}
			}
		}
	}
	p.m[id] = v
	if p.writes++; p.writes%1024 == 0 {
		p.sweep(now)
	}
}

// sweep drops the expired pins; the caller holds mu.
func (p *pins) sweep(now time.Time) {
	for k, e := range p.m {
		if now.After(e.until) {
			delete(p.m, k)
		}
	}
}

// stick moves the pinned target (unless the strategy's declared order must
// hold) and the pinned connection to the front.
func stickTargets(targets []Target, strategy string, p pin) []Target {
	if strategy == StrategyPriority || strategy == "" {
		return targets
	}
	for i, t := range targets {
		if t.String() == p.target && i > 0 {
			out := append([]Target{t}, targets[:i]...)
			return append(out, targets[i+1:]...)
		}
	}
	return targets
}

func stickConnections(conns []Connection, p pin) []Connection {
	for i, c := range conns {
		if c.ID == p.connection && i > 0 {
			out := append([]Connection{c}, conns[:i]...)
			return append(out, conns[i+1:]...)
		}
	}
	return conns
}
