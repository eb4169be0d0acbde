package nucleus

import "time"

// replayCache remembers the nonces of accepted frames for twice the
// timestamp window, in arrival order. It is bounded: when full of
// unexpired nonces it refuses new ones (fails closed). Not safe for
// concurrent use.
type replayCache struct {
	seen  map[[nonceSize]byte]struct{}
	order []replayEntry
	head  int
	max   int
}

type replayEntry struct {
	nonce   [nonceSize]byte
	expires time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seen: make(map[[nonceSize]byte]struct{}), max: max}
}

// purge forgets the nonces that expired by now.
func (r *replayCache) purge(now time.Time) {
	for r.head < len(r.order) && !now.Before(r.order[r.head].expires) {
		delete(r.seen, r.order[r.head].nonce)
		r.order[r.head] = replayEntry{}
		r.head++
	}
	if r.head > 64 && r.head*2 > len(r.order) {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}

// add records a nonce and reports whether it was new and there was room.
func (r *replayCache) add(nonce [nonceSize]byte, now time.Time) bool {
	r.purge(now)
	if _, dup := r.seen[nonce]; dup || len(r.seen) >= r.max {
		return false
	}
	r.seen[nonce] = struct{}{}
	r.order = append(r.order, replayEntry{nonce: nonce, expires: now.Add(2 * Window)})
	return true
}

func (r *replayCache) len() int { return len(r.seen) }
