package policy

import (
	"sync"
	"time"
)

// How long a tracked flow lasts after its last packet, and how many flows
// a Conntrack holds by default.
const (
	TCPTimeout        = 5 * time.Minute
	TCPClosingTimeout = 10 * time.Second // after a FIN or RST
	UDPTimeout        = 2 * time.Minute  // and every protocol but TCP and ICMP
	ICMPTimeout       = 30 * time.Second
	MaxFlows          = 65536
)

// Conntrack is the table of flows a device started, keyed by protocol,
// addresses and ports, shared by the filters swapped in one after the
// other. It is bounded: past its size the least recently used flow goes.
// It is sharded by flow, one mutex per shard.
type Conntrack struct {
	now    func() time.Time
	base   time.Time
	shards []shard
}

type flowKey struct {
	local, remote u128
	lport, rport  uint16
	proto, fm     uint8
}

type shard struct {
	mu         sync.Mutex
	m          map[flowKey]int32 // → index in e
	e          []flow
	free       []int32
	head, tail int32 // most and least recently used; -1 when empty
	max        int
}

type flow struct {
	k          flowKey
	exp        time.Duration // since Conntrack.base
	prev, next int32
	closing    bool
}

// NewConntrack returns a table of at most max flows (MaxFlows when ≤ 0)
// whose timeouts run on now (time.Now when nil).
func NewConntrack(max int, now func() time.Time) *Conntrack {
	if max <= 0 {
		max = MaxFlows
	}
	if now == nil {
		now = time.Now
	}
	n := 1 // shards of at least 1024 flows, at most 16
	for n < 16 && max/(2*n) >= 1024 {
		n *= 2
	}
	c := &Conntrack{now: now, base: now(), shards: make([]shard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.m, s.head, s.tail, s.max = map[flowKey]int32{}, -1, -1, max/n
	}
	return c
}

// Len is the number of flows held (some may have expired unseen).
func (c *Conntrack) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (c *Conntrack) shard(k *flowKey) *shard {
	h := k.remote.lo ^ k.remote.hi ^ k.local.lo<<1 ^ uint64(k.lport)<<32 ^ uint64(k.rport)<<16 ^ uint64(k.proto)
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return &c.shards[h&uint64(len(c.shards)-1)]
}

func timeout(k *flowKey, closing bool) time.Duration {
	switch {
	case k.proto == ProtoTCP && closing:
		return TCPClosingTimeout
	case k.proto == ProtoTCP:
		return TCPTimeout
	case k.proto == ProtoICMP || k.proto == ProtoICMPv6:
		return ICMPTimeout
	}
	return UDPTimeout
}

// touch refreshes k's flow (marking it closing when asked), creating it
// when create (and reopening it if closing); it reports whether the flow
// is there.
func (c *Conntrack) touch(k flowKey, closing, create bool) bool {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.m[k]
	if !ok && !create {
		return false // without reading the clock, which may be slow
	}
	now := c.now().Sub(c.base)
	if ok && s.e[i].exp <= now {
		s.remove(i)
		ok = false
	}
	switch {
	case ok && create:
		s.e[i].closing = closing
	case ok:
		s.e[i].closing = s.e[i].closing || closing
	case create:
		i = s.add(k, closing, now)
	default:
		return false
	}
	s.e[i].exp = now + timeout(&k, s.e[i].closing)
	if s.head != i {
		s.unlink(i)
		s.link(i)
	}
	return true
}

// peek reports whether k's flow is there, leaving it as it is.
func (c *Conntrack) peek(k flowKey) bool {
	s := c.shard(&k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.m[k]
	return ok && s.e[i].exp > c.now().Sub(c.base)
}

func (s *shard) add(k flowKey, closing bool, now time.Duration) int32 {
	for n := 0; n < 4 && s.tail >= 0 && s.e[s.tail].exp <= now; n++ {
		s.remove(s.tail) // a few expired flows at the cold end
	}
	if len(s.m) >= s.max {
		s.remove(s.tail)
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		i = int32(len(s.e))
		s.e = append(s.e, flow{})
	}
	s.e[i] = flow{k: k, closing: closing}
	s.m[k] = i
	s.link(i)
	return i
}

func (s *shard) remove(i int32) {
	s.unlink(i)
	delete(s.m, s.e[i].k)
	s.free = append(s.free, i)
}

func (s *shard) unlink(i int32) {
	e := &s.e[i]
	if e.prev >= 0 {
		s.e[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.e[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
}

func (s *shard) link(i int32) {
	e := &s.e[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.e[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}
