package control

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// LocalRevocations is the in-process RevocationSet: a map read under a read
// lock and skipped entirely while empty, so the check on every request
// costs next to nothing. Entries are dropped once past (swept when the map
// has doubled since the last sweep, so a sweep is amortised O(1) per
// Revoke). It serves one replica alone and is the local copy of the Redis
// set.
type LocalRevocations struct {
	n         atomic.Int64
	mu        sync.RWMutex
	m         map[string]time.Time
	nextSweep int
}

// NewLocalRevocations returns an empty set.
func NewLocalRevocations() *LocalRevocations {
	return &LocalRevocations{m: make(map[string]time.Time), nextSweep: 1024}
}

var _ RevocationSet = (*LocalRevocations)(nil)

// Revoke implements RevocationSet.
func (r *LocalRevocations) Revoke(_ context.Context, family string, until time.Time) error {
	r.Add(family, until, time.Time{})
	return nil
}

// Add records family until the given time; with now set, entries past at
// now may be swept.
func (r *LocalRevocations) Add(family string, until, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.m[family]; !ok || until.After(u) {
		r.m[family] = until
	}
	if len(r.m) >= r.nextSweep && !now.IsZero() {
		r.sweepLocked(now)
	}
	r.n.Store(int64(len(r.m)))
}

// Sweep drops the entries past at now.
func (r *LocalRevocations) Sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked(now)
	r.n.Store(int64(len(r.m)))
}

func (r *LocalRevocations) sweepLocked(now time.Time) {
	for f, u := range r.m {
		if !now.Before(u) {
			delete(r.m, f)
		}
	}
	r.nextSweep = max(1024, 2*len(r.m))
}

// Len returns the number of entries held.
func (r *LocalRevocations) Len() int { return int(r.n.Load()) }

// Revoked implements RevocationSet.
func (r *LocalRevocations) Revoked(family string, now time.Time) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.RLock()
	u, ok := r.m[family]
	r.mu.RUnlock()
	return ok && now.Before(u)
}
