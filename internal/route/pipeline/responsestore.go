package pipeline

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
)

// ResponseStore keeps the conversations behind stored responses, for
// previous_response_id and GET/DELETE /v1/responses/{id}, as the JSON
// the server gives it. Every conversation belongs to an owner, the
// gateway key that stored it ("" for requests without a key): it is
// found, and deleted, only under that owner. Implementations keep each
// for a TTL and within ResponseLimits; the default is a
// MemoryResponseStore (this process only), route/conversations shares
// them between replicas.
type ResponseStore interface {
	// Get returns the conversation stored under owner and id, unless it
	// expired or was evicted.
	Get(ctx context.Context, owner, id string) ([]byte, bool, error)
	// Put stores a conversation; one above ResponseLimits.MaxBytes is
	// refused with ErrResponseTooLarge, others may evict the oldest ones.
	Put(ctx context.Context, owner, id string, conv []byte) error
	// Delete reports whether owner had id stored.
	Delete(ctx context.Context, owner, id string) (bool, error)
}

// ErrResponseTooLarge is Put's answer to a conversation above
// ResponseLimits.MaxBytes: it is not stored.
var ErrResponseTooLarge = errors.New("stored response: conversation larger than the limit")

// ResponseLimits bound a ResponseStore. When a conversation is stored,
// the owner's oldest ones go until the owner is within MaxPerKey and
// MaxKeyBytes, then the oldest of all until the store is within Max and
// MaxTotalBytes.
type ResponseLimits struct {
	TTL           time.Duration // how long a conversation is kept
	MaxBytes      int64         // the JSON of one conversation
	MaxPerKey     int           // conversations of one owner
	MaxKeyBytes   int64         // bytes of one owner's conversations
	Max           int           // conversations in all
	MaxTotalBytes int64         // bytes in all
}

// Defaults of ResponseLimits.
const (
	DefaultResponseTTL           = 24 * time.Hour
	DefaultResponseMaxBytes      = 4 << 20
	DefaultResponseMaxPerKey     = 1000
	DefaultResponseMaxKeyBytes   = 64 << 20
	DefaultResponseMax           = 10000
	DefaultResponseMaxTotalBytes = 256 << 20
)

// WithDefaults fills zero or negative limits with the defaults, and
// raises the byte caps of an owner and of the store to at least one
// conversation's.
func (l ResponseLimits) WithDefaults() ResponseLimits {
	if l.TTL <= 0 {
		l.TTL = DefaultResponseTTL
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultResponseMaxBytes
	}
	if l.MaxPerKey <= 0 {
		l.MaxPerKey = DefaultResponseMaxPerKey
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = DefaultResponseMaxKeyBytes
	}
	if l.Max <= 0 {
		l.Max = DefaultResponseMax
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultResponseMaxTotalBytes
	}
	l.MaxKeyBytes = max(l.MaxKeyBytes, l.MaxBytes)
	l.MaxTotalBytes = max(l.MaxTotalBytes, l.MaxKeyBytes)
	l.Max = max(l.Max, l.MaxPerKey)
	return l
}

// MemoryResponseStore is a ResponseStore in this process's memory. It is
// lost on restart and not shared between replicas. Safe for concurrent
// use.
type MemoryResponseStore struct {
	lim   ResponseLimits
	clock clock.Clock

	mu      sync.Mutex
	all     *list.List // *memEntry, oldest first
	entries map[memKey]*memEntry
	owners  map[string]*memOwner
	bytes   int64
}

type memKey struct{ owner, id string }

type memEntry struct {
	key     memKey
	conv    []byte
	expires time.Time
	inAll   *list.Element
	inOwner *list.Element
}

type memOwner struct {
	list  *list.List // *memEntry, oldest first
	bytes int64
}

// NewMemoryResponseStore returns an empty store within lim (zero fields
// take the defaults).
func NewMemoryResponseStore(lim ResponseLimits, clk clock.Clock) *MemoryResponseStore {
	return &MemoryResponseStore{lim: lim.WithDefaults(), clock: clk, all: list.New(),
		entries: map[memKey]*memEntry{}, owners: map[string]*memOwner{}}
}

// Get implements ResponseStore.
func (m *MemoryResponseStore) Get(_ context.Context, owner, id string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[memKey{owner, id}]
	if !ok {
		return nil, false, nil
	}
	if !m.clock.Now().Before(e.expires) {
		m.remove(e)
		return nil, false, nil
	}
	return e.conv, true, nil
}

// Put implements ResponseStore. Expired conversations are dropped as
// they come first in line.
func (m *MemoryResponseStore) Put(_ context.Context, owner, id string, conv []byte) error {
	if int64(len(conv)) > m.lim.MaxBytes {
		return ErrResponseTooLarge
	}
	conv = append([]byte(nil), conv...)
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for f := m.all.Front(); f != nil && !now.Before(f.Value.(*memEntry).expires); f = m.all.Front() {
		m.remove(f.Value.(*memEntry))
	}
	k := memKey{owner, id}
	if old, ok := m.entries[k]; ok {
		m.remove(old)
	}
	o := m.owners[owner]
	if o == nil {
		o = &memOwner{list: list.New()}
		m.owners[owner] = o
	}
	e := &memEntry{key: k, conv: conv, expires: now.Add(m.lim.TTL)}
	e.inAll, e.inOwner = m.all.PushBack(e), o.list.PushBack(e)
	m.entries[k] = e
	o.bytes += int64(len(conv))
	m.bytes += int64(len(conv))
	// The new conversation fits every cap alone, so it is never the
	// oldest one evicted.
	for o.list.Len() > m.lim.MaxPerKey || o.bytes > m.lim.MaxKeyBytes {
		m.remove(o.list.Front().Value.(*memEntry))
	}
	for len(m.entries) > m.lim.Max || m.bytes > m.lim.MaxTotalBytes {
		m.remove(m.all.Front().Value.(*memEntry))
	}
	return nil
}

// Delete implements ResponseStore.
func (m *MemoryResponseStore) Delete(_ context.Context, owner, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[memKey{owner, id}]
	if !ok {
		return false, nil
	}
	m.remove(e)
	return m.clock.Now().Before(e.expires), nil
}

// Len is the number of conversations held (expired ones included until
// they are noticed).
func (m *MemoryResponseStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

func (m *MemoryResponseStore) remove(e *memEntry) {
	size := int64(len(e.conv))
	m.all.Remove(e.inAll)
	o := m.owners[e.key.owner]
	o.list.Remove(e.inOwner)
	o.bytes -= size
	if o.list.Len() == 0 {
		delete(m.owners, e.key.owner)
	}
	m.bytes -= size
	delete(m.entries, e.key)
}
