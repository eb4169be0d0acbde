package policy

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"
)

// Packet builders for the tests: checksums are left zero (the filter does
// not read them).

func tcpHdr(sport, dport uint16, flags uint8) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, flags
	return b
}

func udpHdr(sport, dport uint16) []byte {
	b := make([]byte, 8, 16)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], 16)
	return append(b, "payload!"...)
}

func icmpMsg(typ uint8, id uint16, body []byte) []byte {
	b := make([]byte, 8)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	return append(b, body...)
}

// ipPkt wraps a transport payload in an IPv4 or IPv6 header (by the
// addresses' family) with TTL/hop limit 64.
func ipPkt(src, dst string, proto uint8, l4 []byte) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	if s.Is4() {
		b := make([]byte, 20, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(20+len(l4)))
		b[8], b[9] = 64, proto
		s4, d4 := s.As4(), d.As4()
		copy(b[12:], s4[:])
		copy(b[16:], d4[:])
		return append(b, l4...)
	}
	b := make([]byte, 40, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6], b[7] = proto, 64
	s16, d16 := s.As16(), d.As16()
	copy(b[8:], s16[:])
	copy(b[24:], d16[:])
	return append(b, l4...)
}

func tcpPkt(src, dst string, sport, dport uint16, flags uint8) []byte {
	return ipPkt(src, dst, ProtoTCP, tcpHdr(sport, dport, flags))
}

func udpPkt(src, dst string, sport, dport uint16) []byte {
	return ipPkt(src, dst, ProtoUDP, udpHdr(sport, dport))
}

func icmpPkt(src, dst string, typ uint8, id uint16, body []byte) []byte {
	proto := uint8(ProtoICMP)
	if netip.MustParseAddr(src).Is6() {
		proto = ProtoICMPv6
	}
	return ipPkt(src, dst, proto, icmpMsg(typ, id, body))
}

// frag4 marks an IPv4 packet as a fragment at offset (in 8-byte units).
func frag4(b []byte, offset uint16, more bool) []byte {
	v := offset
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], v)
	return b
}

// frag6 inserts an IPv6 fragment header.
func frag6(b []byte, offset uint16, more bool) []byte {
	h := make([]byte, 8)
	h[0] = b[6]
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], 0x1234)
	out := append(append(append([]byte{}, b[:40]...), h...), b[40:]...)
	out[6] = 44
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// fakeClock is a settable clock safe for concurrent reads.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
