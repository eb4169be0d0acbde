// Package events is the gateway's event contract: the Event a module
// emits when something an operator may want to hear about happened (a
// request failed, a budget was exceeded, a breaker opened, a key was
// created …), the Publisher it hands events to, and the known event
// types. Publishing never blocks the caller and never fails it; who
// listens (route/webhooks) is not the emitter's concern.
package events

import (
	"context"
	"slices"
	"sync/atomic"
	"time"
)

// Event is one thing that happened. Data is encoded as JSON by whoever
// delivers it: it holds no secret (a key's id and name, never its value).
type Event struct {
	Type string
	At   time.Time
	Data any
}

// Publisher takes events. Publish returns at once and never fails the
// caller: an event that cannot be taken is dropped (and counted by the
// publisher).
type Publisher interface {
	Publish(ctx context.Context, e Event)
}

// The event types.
const (
	RequestFailed  = "request.failed"
	BudgetWarning  = "budget.warning"
	BudgetExceeded = "budget.exceeded"
	BreakerOpened  = "breaker.opened"
	BreakerClosed  = "breaker.closed"
	KeyCreated     = "key.created"
	KeyRevoked     = "key.revoked"
	ProviderDown   = "provider.down"
	BatchCompleted = "batch.completed"
)

// Types are the known event types, in a stable order.
var Types = []string{RequestFailed, BudgetWarning, BudgetExceeded, BreakerOpened, BreakerClosed,
	KeyCreated, KeyRevoked, ProviderDown, BatchCompleted}

// Known reports whether t is one of Types.
func Known(t string) bool { return slices.Contains(Types, t) }

// Discard is the Publisher that drops every event.
var Discard Publisher = discard{}

type discard struct{}

func (discard) Publish(context.Context, Event) {}

// Or returns p, or Discard when p is nil.
func Or(p Publisher) Publisher {
	if p == nil {
		return Discard
	}
	return p
}

// Late is a Publisher whose target is set after the emitters holding it
// were built; until Set, events are dropped. The zero value is ready.
type Late struct {
	p atomic.Pointer[Publisher]
}

// Set makes p the target of every later Publish.
func (l *Late) Set(p Publisher) { l.p.Store(&p) }

// Publish implements Publisher.
func (l *Late) Publish(ctx context.Context, e Event) {
	if p := l.p.Load(); p != nil {
		(*p).Publish(ctx, e)
	}
}
