// Package cache owns the gateway's response cache and idempotency: Cache
// (pipeline.Cache) is an in-memory LRU bounded by entries and bytes with a TTL,
// in front of a shared second tier (the route store's table or Redis);
// Idempotency (pipeline.Idempotency) replays and coalesces requests carrying
// the same Idempotency-Key, in one process or across replicas through
// Redis; Handler serves /api/cache/stats.
package cache

import (
	"container/list"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// Defaults of Options.
const (
	DefaultMaxEntries = 500
	DefaultMaxBytes   = 64 << 20
	DefaultTTL        = time.Hour
	DefaultMaxRows    = 10000
)

// tierTimeout bounds one second-tier operation on the request path.
const tierTimeout = 2 * time.Second

// Tier is the shared second tier of the cache: values are the JSON of an
// llm.Response. It is implemented by the route store and by Redis.
type Tier interface {
	CacheGet(ctx context.Context, key string, now time.Time) (value []byte, expires time.Time, ok bool, err error)
	// CachePut stores value and keeps the tier within maxRows entries
	// (oldest first), deleting expired ones.
	CachePut(ctx context.Context, key string, value []byte, now, expires time.Time, maxRows int) error
	CacheCount(ctx context.Context, now time.Time) (int, error)
	CacheClear(ctx context.Context) (int, error)
}

// Options configure a Cache; zero fields take the defaults.
type Options struct {
	MaxEntries int           // entries kept in memory
	MaxBytes   int           // bytes of serialised responses kept in memory
	TTL        time.Duration // how long an answer is served
	MaxRows    int           // entries kept in the second tier
	Tier       Tier          // nil: memory only
	Clock      clock.Clock
	Log        *slog.Logger
}

// Cache is a two-tier response cache; it implements pipeline.Cache.
type Cache struct {
	opt Options

	mu    sync.Mutex
	lru   *list.List // front: most recently used
	items map[string]*list.Element
	bytes int

	hits, misses atomic.Int64
}

type entry struct {
	key     string
	value   []byte
	expires time.Time
}

// New returns a cache with opt.
func New(opt Options) *Cache {
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultMaxEntries
	}
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.TTL <= 0 {
		opt.TTL = DefaultTTL
	}
	if opt.MaxRows <= 0 {
		opt.MaxRows = DefaultMaxRows
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Cache{opt: opt, lru: list.New(), items: map[string]*list.Element{}}
}

// Get returns the answer stored under key: from memory, else from the
// second tier (then kept in memory for the rest of its lifetime).
func (c *Cache) Get(ctx context.Context, key string) (*llm.Response, bool) {
	now := c.opt.Clock.Now()
	if v, ok := c.memGet(key, now); ok {
		if r, ok := decode(v); ok {
			c.hits.Add(1)
			return r, true
		}
	}
	if c.opt.Tier != nil {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tierTimeout)
		v, exp, ok, err := c.opt.Tier.CacheGet(tctx, key, now)
		cancel()
		if err != nil {
			c.opt.Log.Warn("cache tier read failed", slog.Any("err", err))
		}
		if ok {
			if r, ok := decode(v); ok {
				c.memPut(key, v, exp)
				c.hits.Add(1)
				return r, true
			}
		}
	}
	c.misses.Add(1)
	return nil, false
}

// Put stores resp under key in both tiers for the TTL.
func (c *Cache) Put(ctx context.Context, key string, resp *llm.Response) {
	if resp == nil {
		return
	}
	v, err := json.Marshal(resp)
	if err != nil {
		return
	}
	now := c.opt.Clock.Now()
	exp := now.Add(c.opt.TTL)
	c.memPut(key, v, exp)
	if c.opt.Tier != nil {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tierTimeout)
		defer cancel()
		if err := c.opt.Tier.CachePut(tctx, key, v, now, exp, c.opt.MaxRows); err != nil {
			c.opt.Log.Warn("cache tier write failed", slog.Any("err", err))
		}
	}
}

func decode(v []byte) (*llm.Response, bool) {
	var r llm.Response
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, false
	}
	return &r, true
}

func (c *Cache) memGet(key string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.value, true
}

func (c *Cache) memPut(key string, v []byte, exp time.Time) {
	if len(v) > c.opt.MaxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
	c.items[key] = c.lru.PushFront(&entry{key: key, value: v, expires: exp})
	c.bytes += len(v)
	for c.lru.Len() > c.opt.MaxEntries || c.bytes > c.opt.MaxBytes {
		c.remove(c.lru.Back())
	}
}

func (c *Cache) remove(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.items, e.key)
	c.bytes -= len(e.value)
}

// CacheStats describe a Cache.
type CacheStats struct {
	MemorySize    int     `json:"memorySize"`
	MemoryMaxSize int     `json:"memoryMaxSize"`
	MemoryBytes   int     `json:"memoryBytes"`
	DBSize        int     `json:"dbSize"`
	HitRate       float64 `json:"hitRate"`
	Hits          int64   `json:"hits"`
	Misses        int64   `json:"misses"`
	TTLMs         int64   `json:"ttlMs"`
	Tier          string  `json:"tier"` // "memory", "store" or "redis"
}

// Stats reports the cache's sizes and this process's hit rate.
func (c *Cache) Stats(ctx context.Context) (CacheStats, error) {
	c.mu.Lock()
	s := CacheStats{MemorySize: c.lru.Len(), MemoryMaxSize: c.opt.MaxEntries, MemoryBytes: c.bytes,
		TTLMs: c.opt.TTL.Milliseconds(), Tier: "memory"}
	c.mu.Unlock()
	s.Hits, s.Misses = c.hits.Load(), c.misses.Load()
	if n := s.Hits + s.Misses; n > 0 {
		s.HitRate = float64(s.Hits) / float64(n)
	}
	if c.opt.Tier != nil {
		s.Tier = "store"
		if _, ok := c.opt.Tier.(*RedisTier); ok {
			s.Tier = "redis"
		}
		n, err := c.opt.Tier.CacheCount(ctx, c.opt.Clock.Now())
		if err != nil {
			return s, err
		}
		s.DBSize = n
	}
	return s, nil
}

// Clear empties both tiers and resets the hit counters; it returns how
// many entries each tier held.
func (c *Cache) Clear(ctx context.Context) (memory, tier int, err error) {
	c.mu.Lock()
	memory = c.lru.Len()
	c.lru.Init()
	c.items = map[string]*list.Element{}
	c.bytes = 0
	c.mu.Unlock()
	c.hits.Store(0)
	c.misses.Store(0)
	if c.opt.Tier != nil {
		tier, err = c.opt.Tier.CacheClear(ctx)
	}
	return memory, tier, err
}
