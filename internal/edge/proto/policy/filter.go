package policy

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// IP protocol numbers, for Allow.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Filter decides the packets one device receives: the compiled rules and
// the Conntrack of the flows it started. A nil *Filter passes everything
// and records nothing.
type Filter struct {
	all   bool
	tab   [2]table // IPv4, IPv6
	lines []ruleLine
	ct    *Conntrack
}

// AllowAll is the filter of an absent policy: every packet passes (its
// Outbound still records flows, for the policy that may follow it).
func AllowAll() *Filter { return &Filter{all: true, ct: NewConntrack(0, nil)} }

// WithConntrack returns a copy of f (AllowAll when nil) tracking its flows
// in ct.
func (f *Filter) WithConntrack(ct *Conntrack) *Filter {
	g := Filter{all: true}
	if f != nil {
		g = *f
	}
	g.ct = ct
	return &g
}

// Allow reports whether the rules alone let a packet from src to dst with
// IP protocol proto and destination port (ignored but for TCP and UDP) in.
// It is what a dry run asks.
func (f *Filter) Allow(src, dst netip.Addr, proto uint8, port uint16) bool {
	if f == nil || f.all {
		return true
	}
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return false
	}
	s, _ := span(netip.PrefixFrom(src, src.BitLen()))
	d, _ := span(netip.PrefixFrom(dst, dst.BitLen()))
	fm := 0
	if src.Is6() {
		fm = 1
	}
	return f.allow(fm, s, d, classOf(proto, fm), port)
}

// Inbound reports whether a raw IPv4 or IPv6 packet arriving from the
// tunnel may pass (see the package doc for what passes).
func (f *Filter) Inbound(b []byte) bool {
	if f == nil || f.all {
		return true
	}
	var p packet
	if !parse(b, &p, false) {
		return false
	}
	if p.nonFirst || f.allow(p.fm, p.src, p.dst, p.class, p.dport) {
		return true
	}
	if p.class == pICMP {
		switch {
		case p.fm == 1 && 133 <= p.typ && p.typ <= 136 && p.hop == 255:
			return true // neighbour discovery
		case p.fm == 0 && (p.typ == 3 || p.typ == 11 || p.typ == 12) || p.fm == 1 && 1 <= p.typ && p.typ <= 4:
			return f.related(&p) // unreachable, packet too big, time exceeded, parameter problem
		case p.typ != echoReply[p.fm]:
			return false
		}
	}
	return f.ct != nil && f.ct.touch(p.flow(false), p.flags&(tcpFIN|tcpRST) != 0, false)
}

// related reports whether an ICMP error is about a packet this device sent
// in a tracked flow, or in reply to one the rules let in.
func (f *Filter) related(p *packet) bool {
	var q packet
	if !parse(p.body, &q, true) || q.fm != p.fm || q.nonFirst || q.src != p.dst {
		return false
	}
	return f.ct != nil && f.ct.peek(q.flow(true)) ||
		f.allow(q.fm, q.dst, q.src, q.class, q.sport)
}

// Outbound records the flow a packet this device sends into the tunnel
// starts or continues (see the package doc for what is recorded).
func (f *Filter) Outbound(b []byte) {
	if f == nil || f.ct == nil {
		return
	}
	var p packet
	if !parse(b, &p, false) || p.nonFirst {
		return
	}
	switch p.class {
	case pTCP:
		f.ct.touch(p.flow(true), p.flags&(tcpFIN|tcpRST) != 0, p.flags&(tcpSYN|tcpACK) == tcpSYN)
	case pICMP:
		if p.typ == echoRequest[p.fm] {
			f.ct.touch(p.flow(true), false, true)
		}
	default:
		if !f.all && !f.allow(p.fm, p.dst, p.src, p.class, p.sport) {
			f.ct.touch(p.flow(true), false, true)
		}
	}
}

// ICMP echo types (IPv4, IPv6).
var echoRequest, echoReply = [2]uint8{8, 128}, [2]uint8{0, 129}

// TCP flags.
const (
	tcpFIN = 1 << 0
	tcpSYN = 1 << 1
	tcpRST = 1 << 2
	tcpACK = 1 << 4
)

// packet is what the filter reads of one.
type packet struct {
	fm           int // 0 IPv4, 1 IPv6
	src, dst     u128
	proto, class uint8
	nonFirst     bool // a fragment other than the first
	// sport, dport: TCP and UDP ports; for an ICMP echo the identifier
	// is the port of its initiator (sport of a request, dport of a reply).
	sport, dport uint16
	flags        uint8 // TCP
	typ, hop     uint8 // ICMP type; TTL or hop limit
	body         []byte
}

func classOf(proto uint8, fm int) uint8 {
	switch {
	case proto == ProtoTCP:
		return pTCP
	case proto == ProtoUDP:
		return pUDP
	case proto == [2]uint8{ProtoICMP, ProtoICMPv6}[fm]:
		return pICMP
	}
	return pOther
}

// flow is the key of the packet's flow: out, as this device sends it; else
// as it receives it.
func (p *packet) flow(out bool) flowKey {
	if out {
		return flowKey{p.src, p.dst, p.sport, p.dport, p.proto, uint8(p.fm)}
	}
	return flowKey{p.dst, p.src, p.dport, p.sport, p.proto, uint8(p.fm)}
}

// parse reads an IP packet; inner is one quoted in an ICMP error: its
// length fields are not checked and its transport header may be cut after
// the ports (ICMP quotes at least 8 bytes of it).
func parse(b []byte, p *packet, inner bool) bool {
	be := binary.BigEndian
	var off int
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		off = int(b[0]&0xf) * 4
		if n := int(be.Uint16(b[2:])); off < 20 || off > len(b) || !inner && (n < off || n > len(b)) {
			return false
		} else if !inner {
			b = b[:n]
		}
		p.fm, p.proto, p.hop = 0, b[9], b[8]
		p.src, p.dst = u128{0, uint64(be.Uint32(b[12:]))}, u128{0, uint64(be.Uint32(b[16:]))}
		p.nonFirst = be.Uint16(b[6:])&0x1fff != 0
	case len(b) >= 40 && b[0]>>4 == 6:
		if n := 40 + int(be.Uint16(b[4:])); !inner && n > len(b) {
			return false
		} else if !inner {
			b = b[:n]
		}
		p.fm, p.hop = 1, b[7]
		p.src, p.dst = u128{be.Uint64(b[8:]), be.Uint64(b[16:])}, u128{be.Uint64(b[24:]), be.Uint64(b[32:])}
		nh := b[6]
		off = 40
		// Extension headers, up to the transport header or, in a non-first
		// fragment, to the fragment header (the payload follows).
		for i := 0; !p.nonFirst && (nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60); i++ {
			if i == 8 || off+8 > len(b) {
				return false
			}
			switch nh {
			case 44: // fragment
				p.nonFirst = be.Uint16(b[off+2:])&^7 != 0
				nh, off = b[off], off+8
			case 51: // authentication header
				nh, off = b[off], off+(int(b[off+1])+2)*4
			default:
				nh, off = b[off], off+(int(b[off+1])+1)*8
			}
		}
		p.proto = nh
	default:
		return false
	}
	p.class = classOf(p.proto, p.fm)
	if p.nonFirst {
		return true
	}
	need := 0 // bytes of the transport header read
	switch {
	case p.class == pICMP || p.class == pUDP && !inner:
		need = 8
	case p.class == pTCP && !inner:
		need = 14
	case p.class == pTCP || p.class == pUDP:
		need = 4
	}
	if off+need > len(b) {
		return false
	}
	l4 := b[off:]
	switch p.class {
	case pTCP, pUDP:
		p.sport, p.dport = be.Uint16(l4), be.Uint16(l4[2:])
		if p.class == pTCP && len(l4) >= 14 {
			p.flags = l4[13]
		}
	case pICMP:
		p.typ, p.body = l4[0], l4[8:]
		if id := be.Uint16(l4[4:]); p.typ == echoRequest[p.fm] {
			p.sport = id
		} else if p.typ == echoReply[p.fm] {
			p.dport = id
		}
	}
	return true
}

// Atomic holds the Filter in force, swapped live: every Filter stored is
// bound to the Atomic's one Conntrack, so the flows survive a swap.
type Atomic struct {
	ct *Conntrack
	p  atomic.Pointer[Filter]
}

// NewAtomic returns a holder tracking flows in ct (a new default Conntrack
// when nil), holding AllowAll until a Store.
func NewAtomic(ct *Conntrack) *Atomic {
	if ct == nil {
		ct = NewConntrack(0, nil)
	}
	a := &Atomic{ct: ct}
	a.Store(nil)
	return a
}

// Load returns the filter in force.
func (a *Atomic) Load() *Filter { return a.p.Load() }

// Store puts f (AllowAll when nil), bound to the holder's Conntrack, in
// force.
func (a *Atomic) Store(f *Filter) { a.p.Store(f.WithConntrack(a.ct)) }
