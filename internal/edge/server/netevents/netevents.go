// Package netevents carries "this network changed" notices
// (control.NetworkEvents) from the control plane to the nucleus of every
// replica, which reloads the network at once: in process (Memory), or
// through a Redis pub/sub channel when replicas share a Redis (Redis).
package netevents

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/redisx"
)

// maxID bounds the notices delivered (network ids are short).
const maxID = 64

// subscribers fans a notice out to the registered functions.
type subscribers struct {
	mu   sync.Mutex
	fs   []func(networkID string)
	alls []func()
}

// SubscribeAll registers f, called when notices may have been missed
// (every network may have changed): after each (re)subscription to the
// shared channel. f must not block.
func (s *subscribers) SubscribeAll(f func()) {
	s.mu.Lock()
	s.alls = append(s.alls, f)
	s.mu.Unlock()
}

func (s *subscribers) deliverAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.alls {
		f()
	}
}

// Subscribe registers f, called with the id of each changed network.
// Calls happen one at a time; f must not block.
func (s *subscribers) Subscribe(f func(networkID string)) {
	s.mu.Lock()
	s.fs = append(s.fs, f)
	s.mu.Unlock()
}

func (s *subscribers) deliver(id string) {
	if id == "" || len(id) > maxID {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.fs {
		f(id)
	}
}

// Memory delivers notices to this process's subscribers (none is ever
// missed: SubscribeAll functions are not called).
type Memory struct{ subscribers }

// NewMemory returns an in-process bus.
func NewMemory() *Memory { return &Memory{} }

// Publish implements control.NetworkEvents.
func (m *Memory) Publish(_ context.Context, networkID string) error {
	m.deliver(networkID)
	return nil
}

// Run returns at once: there is nothing to follow.
func (m *Memory) Run(context.Context) error { return nil }

// Ready is always true.
func (m *Memory) Ready() bool { return true }

// Redis publishes notices on a Redis channel and delivers those of every
// replica (this one's included) to this process's subscribers. A notice
// that cannot be published is delivered here at once; the other replicas'
// nuclei reload every network when their subscription is back
// (SubscribeAll), and otherwise within their directory TTL.
type Redis struct {
	subscribers
	rdb        *redis.Client
	channel    string
	subscribed atomic.Bool
}

// NewRedis returns a bus on the channel prefix + "netevents".
func NewRedis(rdb *redis.Client, prefix string) *Redis {
	return &Redis{rdb: rdb, channel: prefix + "netevents"}
}

// Publish implements control.NetworkEvents.
func (r *Redis) Publish(ctx context.Context, networkID string) error {
	if err := r.rdb.Publish(ctx, r.channel, networkID).Err(); err != nil {
		r.deliver(networkID)
		return err
	}
	return nil
}

// Ready reports whether the subscription is in place.
func (r *Redis) Ready() bool { return r.subscribed.Load() }

// Run follows the channel until ctx ends; the client subscribes again
// after a failure. Every (re)subscription tells the SubscribeAll
// functions, since notices published while it was down are lost.
func (r *Redis) Run(ctx context.Context) error {
	return redisx.Follow(ctx, r.rdb, r.channel, redisx.Follower{
		OnSubscribed: func(context.Context) { r.deliverAll() },
		OnMessage:    r.deliver,
		Ready:        &r.subscribed,
	})
}
