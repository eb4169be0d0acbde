package api

import (
	"container/list"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
)

// Defaults of the in-memory response store.
const (
	DefaultStoredResponses     = 4096
	DefaultStoredResponseBytes = 64 << 20
	DefaultStoredResponseTTL   = 24 * time.Hour
)

// MemoryResponseStore is a ResponseStore in this process's memory: least
// recently used conversations are evicted beyond a count or a total size
// (their JSON size), and each expires a fixed time after it was stored.
// It is lost on restart and not shared between replicas. Safe for
// concurrent use.
type MemoryResponseStore struct {
	maxEntries int
	maxBytes   int64
	ttl        time.Duration
	clock      clock.Clock

	mu    sync.Mutex
	lru   *list.List // front: most recently used *memEntry
	byID  map[string]*list.Element
	bytes int64
}

type memEntry struct {
	id      string
	conv    Conversation
	size    int64
	expires time.Time
}

// NewMemoryResponseStore keeps at most maxEntries conversations of at
// most maxBytes in total, each for ttl; zero or negative values take the
// defaults.
func NewMemoryResponseStore(maxEntries int, maxBytes int64, ttl time.Duration, clk clock.Clock) *MemoryResponseStore {
	if maxEntries <= 0 {
		maxEntries = DefaultStoredResponses
	}
	if maxBytes <= 0 {
		maxBytes = DefaultStoredResponseBytes
	}
	if ttl <= 0 {
		ttl = DefaultStoredResponseTTL
	}
	return &MemoryResponseStore{maxEntries: maxEntries, maxBytes: maxBytes, ttl: ttl, clock: clk, lru: list.New(), byID: map[string]*list.Element{}}
}

// conversationSize approximates the memory a conversation holds.
func conversationSize(c Conversation) int64 {
	b, _ := json.Marshal(struct {
		S any
		M any
	}{c.System, c.Messages})
	return int64(len(b) + len(c.Response))
}

// Get returns the conversation stored under id, unless it expired.
func (m *MemoryResponseStore) Get(_ context.Context, id string) (Conversation, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok {
		return Conversation{}, false, nil
	}
	e := el.Value.(*memEntry)
	if !m.clock.Now().Before(e.expires) {
		m.remove(el)
		return Conversation{}, false, nil
	}
	m.lru.MoveToFront(el)
	return e.conv, true, nil
}

// Put stores c under id, evicting the least recently used conversations
// to stay within the bounds (expired ones are dropped when next looked up
// or evicted). A conversation larger
// than the whole budget is not kept.
func (m *MemoryResponseStore) Put(_ context.Context, id string, c Conversation) error {
	size := conversationSize(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byID[id]; ok {
		m.remove(el)
	}
	if size > m.maxBytes {
		return nil
	}
	now := m.clock.Now()
	m.byID[id] = m.lru.PushFront(&memEntry{id: id, conv: c, size: size, expires: now.Add(m.ttl)})
	m.bytes += size
	for m.lru.Len() > m.maxEntries || m.bytes > m.maxBytes {
		m.remove(m.lru.Back()) // never the new entry: it fits the budget alone
	}
	return nil
}

// Delete removes id; it reports whether it was stored.
func (m *MemoryResponseStore) Delete(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[id]
	if !ok {
		return false, nil
	}
	expired := !m.clock.Now().Before(el.Value.(*memEntry).expires)
	m.remove(el)
	return !expired, nil
}

// Len is the number of conversations held (expired ones included until
// they are noticed).
func (m *MemoryResponseStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

func (m *MemoryResponseStore) remove(el *list.Element) {
	e := m.lru.Remove(el).(*memEntry)
	delete(m.byID, e.id)
	m.bytes -= e.size
}
