package limits

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
)

// Counter is one windowed counter of a reservation: requests, tokens or
// spend (USD micros) of one key in one window.
type Counter struct {
	Key    string        // unique per key, limit and window
	Limit  int64         // 0: not checked, only counted
	Amount int64         // added when the reservation is admitted (may be 0)
	TTL    time.Duration // how long the window lasts from now; the counter is dropped after it
}

// Counters keep windowed counters, in memory or shared by replicas.
type Counters interface {
	// Reserve checks every counter with a limit: if each is below its
	// limit, every Amount is added and -1 is returned; otherwise nothing
	// changes and the index of the first counter at its limit is returned.
	// The check and the additions are one atomic step.
	Reserve(ctx context.Context, cs []Counter) (int, error)
	// Add adds Amount (which may be negative) to each counter.
	Add(ctx context.Context, cs []Counter) error
	// Get returns the counters' values (0 when absent).
	Get(ctx context.Context, keys []string) ([]int64, error)
	// Seed sets a counter that does not exist yet (restoring persisted
	// spend after a restart).
	Seed(ctx context.Context, c Counter) error
}

// Memory is the single-replica Counters.
type Memory struct {
	clk  clock.Clock
	mu   sync.Mutex
	m    map[string]memEntry
	next int // size at which expired entries are swept
}

type memEntry struct {
	v   int64
	exp time.Time
}

// NewMemory returns empty in-process counters.
func NewMemory(clk clock.Clock) *Memory {
	return &Memory{clk: clk, m: map[string]memEntry{}, next: 1024}
}

func (m *Memory) get(k string, now time.Time) (memEntry, bool) {
	e, ok := m.m[k]
	if ok && !now.Before(e.exp) {
		delete(m.m, k)
		return memEntry{}, false
	}
	return e, ok
}

func (m *Memory) add(c Counter, now time.Time) {
	e, ok := m.get(c.Key, now)
	if !ok {
		e.exp = now.Add(c.TTL)
	}
	e.v += c.Amount
	m.m[c.Key] = e
	if len(m.m) >= m.next {
		for k, e := range m.m {
			if !now.Before(e.exp) {
				delete(m.m, k)
			}
		}
		m.next = max(1024, 2*len(m.m))
	}
}

// Reserve implements Counters.
func (m *Memory) Reserve(_ context.Context, cs []Counter) (int, error) {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range cs {
		if c.Limit > 0 {
			if e, _ := m.get(c.Key, now); e.v >= c.Limit {
				return i, nil
			}
		}
	}
	for _, c := range cs {
		m.add(c, now)
	}
	return -1, nil
}

// Add implements Counters.
func (m *Memory) Add(_ context.Context, cs []Counter) error {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		if c.Amount != 0 {
			m.add(c, now)
		}
	}
	return nil
}

// Get implements Counters.
func (m *Memory) Get(_ context.Context, keys []string) ([]int64, error) {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, len(keys))
	for i, k := range keys {
		e, _ := m.get(k, now)
		out[i] = e.v
	}
	return out, nil
}

// Seed implements Counters.
func (m *Memory) Seed(_ context.Context, c Counter) error {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.get(c.Key, now); !ok {
		m.m[c.Key] = memEntry{v: c.Amount, exp: now.Add(c.TTL)}
	}
	return nil
}

// Redis is the Counters shared by replicas: every counter is a Redis
// integer under prefix, checked and added by one Lua script. TTLs are
// relative, so the Redis server's clock does not matter.
type Redis struct {
	c      *redis.Client
	prefix string
}

// NewRedis returns counters kept in Redis under keys starting with prefix.
func NewRedis(c *redis.Client, prefix string) *Redis { return &Redis{c: c, prefix: prefix + "limits:"} }

// reserveScript: KEYS are the counters; ARGV holds limit, amount, ttl ms
// for each. Returns 0 when admitted, else the 1-based index refused.
var reserveScript = redis.NewScript(`
for i = 1, #KEYS do
  local lim = tonumber(ARGV[(i-1)*3+1])
  if lim > 0 then
    local v = tonumber(redis.call('GET', KEYS[i]) or '0')
    if v >= lim then return i end
  end
end
for i = 1, #KEYS do
  local amt = tonumber(ARGV[(i-1)*3+2])
  local v = redis.call('INCRBY', KEYS[i], amt)
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[(i-1)*3+3]) end
end
return 0
`)

var addScript = redis.NewScript(`
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[(i-1)*2+1])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[(i-1)*2+2]) end
end
return 0
`)

func ttlMS(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// Reserve implements Counters.
func (r *Redis) Reserve(ctx context.Context, cs []Counter) (int, error) {
	if len(cs) == 0 {
		return -1, nil
	}
	keys := make([]string, len(cs))
	args := make([]any, 0, 3*len(cs))
	for i, c := range cs {
		keys[i] = r.prefix + c.Key
		args = append(args, c.Limit, c.Amount, ttlMS(c.TTL))
	}
	n, err := reserveScript.Run(ctx, r.c, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("limits: redis reserve: %w", err)
	}
	return n - 1, nil
}

// Add implements Counters.
func (r *Redis) Add(ctx context.Context, cs []Counter) error {
	var keys []string
	var args []any
	for _, c := range cs {
		if c.Amount != 0 {
			keys = append(keys, r.prefix+c.Key)
			args = append(args, c.Amount, ttlMS(c.TTL))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := addScript.Run(ctx, r.c, keys, args...).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("limits: redis add: %w", err)
	}
	return nil
}

// Get implements Counters.
func (r *Redis) Get(ctx context.Context, keys []string) ([]int64, error) {
	out := make([]int64, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
	}
	vals, err := r.c.MGet(ctx, full...).Result()
	if err != nil {
		return nil, fmt.Errorf("limits: redis get: %w", err)
	}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			fmt.Sscan(s, &out[i])
		}
	}
	return out, nil
}

// Seed implements Counters.
func (r *Redis) Seed(ctx context.Context, c Counter) error {
	return r.c.SetNX(ctx, r.prefix+c.Key, c.Amount, time.Duration(ttlMS(c.TTL))*time.Millisecond).Err()
}
