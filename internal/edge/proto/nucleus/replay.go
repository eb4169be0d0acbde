package nucleus

import "time"

// replayCache remembers the nonces of accepted frames, in arrival order,
// for twice the timestamp window. It is bounded: when full it forgets the
// nonce that arrived first and raises a floor, and a frame dated at or
// before the floor is refused as a possible replay of a forgotten one. The
// floor never passes the forgotten frame's arrival time, so a flood that
// fills the cache refuses nothing but frames dated before the oldest
// arrival it still remembers. (A forgotten frame dated in the future can
// be replayed until its timestamp leaves the window; every request also
// carries a cookie bound to its source address, so such a replay only
// repeats what that source already asked.) Not safe for concurrent use.
type replayCache struct {
	seen  map[[nonceSize]byte]struct{}
	order []replayEntry
	head  int
	max   int
	floor int64 // Unix milliseconds; frames dated at or before it are refused
}

type replayEntry struct {
	nonce   [nonceSize]byte
	ts      int64 // the frame's timestamp, Unix milliseconds
	arrived int64 // Unix milliseconds
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seen: make(map[[nonceSize]byte]struct{}), max: max}
}

// purge forgets the nonces that arrived two windows ago or earlier.
func (r *replayCache) purge(now time.Time) {
	limit := now.Add(-2 * Window).UnixMilli()
	for r.head < len(r.order) && r.order[r.head].arrived <= limit {
		r.pop()
	}
	r.compact()
}

// pop forgets the oldest nonce.
func (r *replayCache) pop() replayEntry {
	e := r.order[r.head]
	delete(r.seen, e.nonce)
	r.order[r.head] = replayEntry{}
	r.head++
	return e
}

func (r *replayCache) compact() {
	if r.head > 64 && r.head*2 > len(r.order) {
		r.order = append(r.order[:0], r.order[r.head:]...)
		r.head = 0
	}
}

// add records the nonce of a frame dated ts and reports whether it is new.
// When the cache is full the oldest nonce is forgotten first.
func (r *replayCache) add(nonce [nonceSize]byte, ts int64, now time.Time) bool {
	r.purge(now)
	if ts <= r.floor {
		return false
	}
	if _, dup := r.seen[nonce]; dup {
		return false
	}
	at := now.UnixMilli()
	for len(r.seen) >= r.max && r.head < len(r.order) {
		e := r.pop()
		r.floor = max(r.floor, min(e.ts, e.arrived))
		r.compact()
	}
	if ts <= r.floor {
		return false
	}
	r.seen[nonce] = struct{}{}
	r.order = append(r.order, replayEntry{nonce: nonce, ts: ts, arrived: at})
	return true
}

func (r *replayCache) len() int { return len(r.seen) }
