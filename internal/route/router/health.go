package router

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// Block says why a connection may not be used now and until when.
type Block struct {
	Until  time.Time // when it may be available again
	Status int       // 429 (rate limited) or 503 (unavailable): what the skip is recorded as
	Reason string    // shown in the attempt list
}

// Health tracks the temporary failures of providers, connections and
// models (circuit breakers, cooldowns, lockouts). The router asks it
// before each attempt and tells it every attempt's outcome.
type Health interface {
	// Available reports whether an attempt may go to the connection of
	// provider for model; when not, the Block says why and until when.
	// Granting a circuit breaker's single half-open probe happens here.
	Available(provider, connection, model string) (ok bool, b Block)
	// Observe records an attempt's outcome: status 200 for success, the
	// upstream status for failures, 0 for transport errors; retryAfter
	// is the upstream's Retry-After (0 when absent).
	Observe(provider, connection, model string, status int, retryAfter time.Duration)
}

// Waiter is the optional request queue of a Health: when every
// connection of every target is blocked, Wait blocks until the earliest
// one may be available again (until) and returns nil, or returns an
// error at once when the queue is full or the wait would end later than
// the configured maximum after since (when the request started waiting).
type Waiter interface {
	Wait(ctx context.Context, since, until time.Time) error
}

// SetHealth installs the health tracker consulted before each attempt
// (nil removes it).
func (r *Router) SetHealth(h Health) {
	if h == nil {
		r.health.Store(nil)
		return
	}
	r.health.Store(&h)
}

func (r *Router) healthOf() Health {
	if p := r.health.Load(); p != nil {
		return *p
	}
	return nil
}

// blocked accumulates the skips of one pass over the targets.
type blocked struct {
	n           int
	rateLimited bool // every skip was a 429
	earliest    time.Time
}

func (b *blocked) add(k Block) {
	if b.n == 0 {
		b.rateLimited = true
	}
	b.n++
	b.rateLimited = b.rateLimited && k.Status == http.StatusTooManyRequests
	if b.earliest.IsZero() || k.Until.Before(b.earliest) {
		b.earliest = k.Until
	}
}

// err is the answer when nothing could be tried: 429 when every skip was
// a rate limit, else 503, with Retry-After until the earliest recovery.
func (b *blocked) err(now time.Time) *llm.Error {
	e := &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded,
		Message: "every connection is cooling down or its provider's circuit breaker is open"}
	if b.rateLimited {
		e.Status, e.Type = http.StatusTooManyRequests, llm.ErrRateLimit
		e.Message = "every connection is rate limited and cooling down"
	}
	if d := b.earliest.Sub(now); d > 0 {
		e.RetryAfter = d
		e.Message += fmt.Sprintf("; retry in %s", d.Round(time.Millisecond))
	}
	return e
}
