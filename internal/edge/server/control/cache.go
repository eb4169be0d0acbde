package control

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const shards = 64

// devEntry is what a heartbeat needs about one device, cached so the hot
// path touches no database.
type devEntry struct {
	deviceID string
	routes   []ExitRoute
	// families are login sessions recorded for the device: those in the
	// store when the entry was loaded and those recorded from it since (at
	// most maxEntryFamilies, copy on write), so a heartbeat writes one to
	// the store only the first time it is seen.
	families atomic.Pointer[[]string]
	versions []SecretVersion
	// The device key's record and expiry (see HeartbeatResult).
	keySetAt, keyExpiredAt time.Time
	expiries               []KeyExpiry
}

// maxEntryFamilies bounds the sessions a cache entry remembers.
const maxEntryFamilies = 8

// knows reports whether family was recorded from this entry.
func (e *devEntry) knows(family string) bool {
	if fs := e.families.Load(); fs != nil {
		for _, f := range *fs {
			if f == family {
				return true
			}
		}
	}
	return false
}

// remember records family, dropping the oldest beyond maxEntryFamilies.
func (e *devEntry) remember(family string) {
	var next []string
	if fs := e.families.Load(); fs != nil {
		next = append(next, (*fs)[max(0, len(*fs)-maxEntryFamilies+1):]...)
	}
	next = append(next, family)
	e.families.Store(&next)
}

type cacheShard struct {
	mu    sync.RWMutex
	epoch uint64
	m     map[string]*devEntry
}

// devCache maps user id + hardware uuid to devEntry. A shard whose epoch
// is behind the service's is emptied on its next use, so an invalidation
// costs O(1) and memory stays bounded by the live devices.
type devCache struct {
	seed   maphash.Seed
	shards [shards]cacheShard
}

func (c *devCache) init() {
	c.seed = maphash.MakeSeed()
	for i := range c.shards {
		c.shards[i].m = make(map[string]*devEntry)
	}
}

func (c *devCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%shards]
}

func (c *devCache) get(key string, epoch uint64) (*devEntry, bool) {
	sh := c.shard(key)
	sh.mu.RLock()
	if sh.epoch != epoch {
		sh.mu.RUnlock()
		return nil, false
	}
	e, ok := sh.m[key]
	sh.mu.RUnlock()
	return e, ok
}

func (c *devCache) put(key string, e *devEntry, epoch uint64) {
	sh := c.shard(key)
	sh.mu.Lock()
	if sh.epoch != epoch {
		if epoch < sh.epoch {
			sh.mu.Unlock()
			return // loaded before a newer invalidation: do not cache
		}
		sh.m = make(map[string]*devEntry, len(sh.m))
		sh.epoch = epoch
	}
	sh.m[key] = e
	sh.mu.Unlock()
}

// dirtySet holds heartbeats not yet flushed to the store, newest per device.
type dirtySet struct {
	seed   maphash.Seed
	shards [shards]struct {
		mu sync.Mutex
		m  map[string]Presence
	}
}

func (d *dirtySet) init() {
	d.seed = maphash.MakeSeed()
	for i := range d.shards {
		d.shards[i].m = make(map[string]Presence)
	}
}

func (d *dirtySet) add(p Presence) {
	sh := &d.shards[maphash.String(d.seed, p.DeviceID)%shards]
	sh.mu.Lock()
	sh.m[p.DeviceID] = p
	sh.mu.Unlock()
}

func (d *dirtySet) drain() []Presence {
	var out []Presence
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		m := sh.m
		sh.m = make(map[string]Presence, len(m))
		sh.mu.Unlock()
		for _, p := range m {
			out = append(out, p)
		}
	}
	return out
}

// restore puts back a batch that failed to flush, keeping newer entries.
func (d *dirtySet) restore(batch []Presence) {
	for _, p := range batch {
		sh := &d.shards[maphash.String(d.seed, p.DeviceID)%shards]
		sh.mu.Lock()
		if cur, ok := sh.m[p.DeviceID]; !ok || cur.At.Before(p.At) {
			sh.m[p.DeviceID] = p
		}
		sh.mu.Unlock()
	}
}
