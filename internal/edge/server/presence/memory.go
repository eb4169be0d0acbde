// Package presence implements control.PresenceStore: Memory for a single
// process and Redis for replicas that must see each other's heartbeats.
package presence

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
)

const shards = 64

// Memory keeps presence in a sharded map. Entries older than the retention
// are swept lazily, so memory is bounded by the devices seen recently.
type Memory struct {
	clock     clock.Clock
	retention time.Duration
	seed      maphash.Seed
	shards    [shards]memShard
}

type memShard struct {
	mu     sync.RWMutex
	m      map[string]control.Presence
	writes int
}

var _ control.PresenceStore = (*Memory)(nil)

// NewMemory returns a store that forgets devices silent for longer than
// retention (use a multiple of the online window).
func NewMemory(clk clock.Clock, retention time.Duration) *Memory {
	m := &Memory{clock: clk, retention: retention, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]control.Presence)
	}
	return m
}

func (m *Memory) shard(id string) *memShard { return &m.shards[maphash.String(m.seed, id)%shards] }

// Touch records p unless a newer heartbeat is already recorded.
func (m *Memory) Touch(_ context.Context, p control.Presence) error {
	sh := m.shard(p.DeviceID)
	sh.mu.Lock()
	if cur, ok := sh.m[p.DeviceID]; !ok || !cur.At.After(p.At) {
		sh.m[p.DeviceID] = p
	}
	sh.writes++
	if sh.writes >= 4096 {
		sh.writes = 0
		cutoff := m.clock.Now().Add(-m.retention)
		for id, v := range sh.m {
			if v.At.Before(cutoff) {
				delete(sh.m, id)
			}
		}
	}
	sh.mu.Unlock()
	return nil
}

// Lookup returns the recorded presence of ids.
func (m *Memory) Lookup(_ context.Context, ids []string) (map[string]control.Presence, error) {
	out := make(map[string]control.Presence, len(ids))
	for _, id := range ids {
		sh := m.shard(id)
		sh.mu.RLock()
		p, ok := sh.m[id]
		sh.mu.RUnlock()
		if ok {
			out[id] = p
		}
	}
	return out, nil
}

// Len returns the number of devices held (for tests and metrics).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.RLock()
		n += len(m.shards[i].m)
		m.shards[i].mu.RUnlock()
	}
	return n
}
