package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
)

const (
	// numShards is the number of independently locked key maps; a power of
	// two so a hash selects one with a mask.
	numShards = 64
	// sweepMin is the shard size below which a shard is never swept.
	sweepMin = 1024
	// rebuildMin is the shard size from which a sweep that leaves under a
	// quarter of the entries rebuilds the map to release its storage;
	// smaller maps are kept to avoid regrowing them over and over.
	rebuildMin = 8 * sweepMin
	// Memory times are nanoseconds since the limiter was built. The clamps
	// keep now+window+t far from overflowing int64 for ~100 years of uptime.
	memMaxT      = int64(1) << 59
	memMaxWindow = int64(1) << 60
)

// Memory is an in-process Limiter. It is safe for concurrent use and does
// not start goroutines. Keys are spread over 64 shards, each a mutex and a
// map from key to TAT (int64 nanoseconds since NewMemory). Idle entries
// (TAT in the past) are swept lazily when a shard grows to twice its size
// after the previous sweep, so memory stays proportional to the number of
// keys active within their burst window, with O(1) amortised cost.
type Memory struct {
	clk    clock.Clock
	base   time.Time
	seed   maphash.Seed
	shards [numShards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]int64
	// next is the size at which the next insert sweeps the shard.
	next int
	_    [64]byte // keep neighbouring shards' locks off the same cache line
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty in-process limiter reading time from clk.
func NewMemory(clk clock.Clock) *Memory {
	m := &Memory{clk: clk, base: clk.Now(), seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]int64)
		m.shards[i].next = sweepMin
	}
	return m
}

// Allow reports whether one more request under key may proceed under l and
// records it if so. It never returns an error; ctx is unused.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (Decision, error) {
	t, window, ok := l.cells(time.Nanosecond, memMaxT, memMaxWindow)
	if !ok {
		return unlimited, nil
	}
	// With a monotonic clock (clock.Real) Sub uses the monotonic reading,
	// so wall-clock jumps do not disturb the limiter.
	now := int64(m.clk.Now().Sub(m.base))
	s := &m.shards[maphash.String(m.seed, key)&(numShards-1)]

	s.mu.Lock()
	tat, found := s.m[key]
	if tat < now || !found {
		tat = now
	}
	newTAT := tat + t
	diff := newTAT - now
	if diff > window {
		s.mu.Unlock()
		// window >= t, so a fresh key is never refused: nothing to insert.
		return Decision{RetryAfter: time.Duration(diff - window)}, nil
	}
	if !found && len(s.m) >= s.next {
		s.sweep(now)
	}
	s.m[key] = newTAT
	s.mu.Unlock()
	return Decision{Allowed: true, Remaining: remaining(window, diff, t)}, nil
}

// sweep drops idle entries (TAT at or before now: the bucket is full again,
// which is the same as no entry). It runs with s.mu held. When a large map
// was mostly idle it is rebuilt, since Go maps never release storage on
// delete.
func (s *shard) sweep(now int64) {
	before := len(s.m)
	for k, tat := range s.m {
		if tat <= now {
			delete(s.m, k)
		}
	}
	n := len(s.m)
	if before >= rebuildMin && n < before/4 {
		fresh := make(map[string]int64, 2*n)
		for k, v := range s.m {
			fresh[k] = v
		}
		s.m = fresh
	}
	s.next = max(sweepMin, 2*n)
}

// len returns the number of stored entries, idle ones included (for tests).
func (m *Memory) len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
