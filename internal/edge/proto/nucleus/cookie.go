package nucleus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
)

// cookieJar makes and checks return-routability cookies: a cookie is the
// first CookieSize bytes of HMAC-SHA256(secret, source address and port).
// Only a receiver at that address learns it, so a request carrying it
// proves that its source is not spoofed. The secret is random, lives only
// in this process and is replaced every rotate interval; cookies of the
// current and the previous secret are accepted (valid for one to two
// intervals).
type cookieJar struct {
	mu        sync.RWMutex
	cur, prev [32]byte
	rotated   time.Time
	every     time.Duration
}

func newCookieJar(now time.Time, every time.Duration) *cookieJar {
	j := &cookieJar{rotated: now, every: every}
	rand.Read(j.cur[:])
	rand.Read(j.prev[:])
	return j
}

// rotate replaces the secret when it is older than the interval.
func (j *cookieJar) rotate(now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if now.Sub(j.rotated) < j.every {
		return
	}
	j.prev = j.cur
	rand.Read(j.cur[:])
	j.rotated = now
}

func cookieOf(secret *[32]byte, from netip.AddrPort) [CookieSize]byte {
	m := hmac.New(sha256.New, secret[:])
	a := from.Addr().Unmap().As16()
	m.Write(a[:])
	m.Write([]byte{byte(from.Port() >> 8), byte(from.Port())})
	var c [CookieSize]byte
	copy(c[:], m.Sum(nil))
	return c
}

// make returns the current cookie of an address.
func (j *cookieJar) make(from netip.AddrPort) [CookieSize]byte {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return cookieOf(&j.cur, from)
}

// valid reports whether c is a cookie of from.
func (j *cookieJar) valid(c [CookieSize]byte, from netip.AddrPort) bool {
	if c == ([CookieSize]byte{}) {
		return false
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	cur, prev := cookieOf(&j.cur, from), cookieOf(&j.prev, from)
	return hmac.Equal(c[:], cur[:]) || hmac.Equal(c[:], prev[:])
}

// sourceOf is the key of the per-source budgets: an IPv4 address, or the
// /64 of an IPv6 address (ipam.Source, shared with the control plane's
// per-IP caps).
func sourceOf(a netip.AddrPort) netip.Addr { return ipam.Source(a.Addr()) }

// budget is a token bucket per source: rate tokens a second, at most
// burst saved. It tracks at most max sources; buckets that are full again
// are forgotten by purge, and while max sources are tracked a new one is
// refused (fails closed). Not safe for concurrent use.
type budget struct {
	rate, burst float64
	max         int
	m           map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newBudget(rate, burst float64, max int) *budget {
	return &budget{rate: rate, burst: burst, max: max, m: map[netip.Addr]*bucket{}}
}

// take spends cost tokens of src's bucket and reports whether it could.
func (b *budget) take(src netip.Addr, cost float64, now time.Time) bool {
	k := b.m[src]
	if k == nil {
		if len(b.m) >= b.max {
			b.purge(now)
			if len(b.m) >= b.max {
				return false
			}
		}
		k = &bucket{tokens: b.burst, at: now}
		b.m[src] = k
	}
	return k.take(b.rate, b.burst, cost, now)
}

// take refills the bucket (rate tokens a second, at most burst; a zero
// bucket is full) and spends cost tokens if it can.
func (k *bucket) take(rate, burst, cost float64, now time.Time) bool {
	if k.at.IsZero() {
		k.tokens = burst
	} else if d := now.Sub(k.at).Seconds(); d > 0 {
		k.tokens = min(burst, k.tokens+d*rate)
	}
	k.at = now
	if k.tokens < cost {
		return false
	}
	k.tokens -= cost
	return true
}

// purge forgets the sources whose bucket has refilled.
func (b *budget) purge(now time.Time) {
	for src, k := range b.m {
		if k.tokens+now.Sub(k.at).Seconds()*b.rate >= b.burst {
			delete(b.m, src)
		}
	}
}
