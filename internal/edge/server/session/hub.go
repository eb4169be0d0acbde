package session

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// hub is a replica's one subscription to a channel whose messages name a
// key (a session id): every waiter of the replica registers its key and is
// woken by a message naming it. The subscription is opened by the first
// waiter and closed when the last leaves, so an idle replica holds no
// Pub/Sub connection and a busy one holds exactly one, whatever the number
// of waiters. After a reconnect (a new subscription confirmation) every
// waiter is woken, since messages may have been lost.
type hub struct {
	c       *redis.Client
	channel string

	mu      sync.Mutex
	cur     *subscription // nil while no waiter is registered
	waiters map[string]chan struct{}
}

// subscription is one open subscription of a hub.
type subscription struct {
	sub   *redis.PubSub
	ready chan struct{} // closed once sub is confirmed (or failed)
	err   error         // why it failed, set before ready is closed
}

func newHub(c *redis.Client, channel string) *hub {
	return &hub{c: c, channel: channel, waiters: make(map[string]chan struct{})}
}

// join registers key and returns the channel that wakes it and the
// function that unregisters it. It returns once the subscription is
// confirmed, so a message published afterwards is sure to arrive.
func (h *hub) join(ctx context.Context, key string) (<-chan struct{}, func(), error) {
	wake := make(chan struct{}, 1)
	h.mu.Lock()
	h.waiters[key] = wake
	if h.cur == nil {
		h.cur = &subscription{sub: h.c.Subscribe(context.Background(), h.channel), ready: make(chan struct{})}
		go h.run(h.cur)
	}
	st := h.cur
	h.mu.Unlock()
	leave := func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.waiters[key] == wake {
			delete(h.waiters, key)
		}
		if len(h.waiters) == 0 && h.cur != nil {
			h.cur.sub.Close()
			h.cur = nil
		}
	}
	select {
	case <-st.ready:
	case <-ctx.Done():
		leave()
		return nil, nil, ctx.Err()
	}
	if st.err != nil {
		h.mu.Lock()
		if h.cur == st {
			st.sub.Close()
			h.cur = nil
		}
		h.mu.Unlock()
		leave()
		return nil, nil, st.err
	}
	return wake, leave, nil
}

func (h *hub) run(st *subscription) {
	msg, err := st.sub.ReceiveTimeout(context.Background(), subscribeTimeout)
	if err == nil {
		if _, ok := msg.(*redis.Subscription); !ok {
			err = fmt.Errorf("unexpected reply %v", msg)
		}
	}
	st.err = err
	close(st.ready)
	if err != nil {
		return
	}
	for m := range st.sub.ChannelWithSubscriptions() {
		h.mu.Lock()
		switch m := m.(type) {
		case *redis.Message:
			if w, ok := h.waiters[m.Payload]; ok {
				notify(w)
			}
		case *redis.Subscription:
			for _, w := range h.waiters {
				notify(w)
			}
		}
		h.mu.Unlock()
	}
}

// subscribed reports the number of registered waiters (for tests).
func (h *hub) subscribed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters)
}

func notify(w chan struct{}) {
	select {
	case w <- struct{}{}:
	default:
	}
}

// listening reports whether key has a waiter on a confirmed
// subscription: a message published from now on reaches it (for tests).
func (h *hub) listening(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters[key] == nil || h.cur == nil {
		return false
	}
	select {
	case <-h.cur.ready:
		return h.cur.err == nil
	default:
		return false
	}
}
