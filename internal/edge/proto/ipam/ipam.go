// Package ipam owns OmniEdge address management as pure functions: network
// ranges inside 100.64.0.0/10, a unique ULA (fd00::/8) prefix per network
// whose host part mirrors the IPv4 host part, host allocation, and the
// masks a join response reports, and the source key per-client limits
// count by (Source). Persistence and locking belong to the
// caller; every function here is deterministic given its inputs (and the
// random source for ULA prefixes).
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
)

// CGNAT is the space every network range must lie in.
var CGNAT = netip.MustParsePrefix("100.64.0.0/10")

// DefaultBits is the size of a network created without an explicit range.
const DefaultBits = 24

// MinBits and MaxBits bound an explicit range: at most a /10, at least a /30
// (two usable hosts).
const (
	MinBits = 10
	MaxBits = 30
)

// Errors.
var (
	ErrOutside   = errors.New("range must lie inside 100.64.0.0/10")
	ErrSize      = fmt.Errorf("range prefix length must be between /%d and /%d", MinBits, MaxBits)
	ErrNoRange   = errors.New("no free range left in 100.64.0.0/10")
	ErrExhausted = errors.New("no free address left in the network")
)

// ParseRange validates an explicit IPv4 range and returns it masked.
func ParseRange(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid range %q: want CIDR such as 100.66.1.0/24", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("invalid range %q: must be IPv4", s)
	}
	if p.Bits() < MinBits || p.Bits() > MaxBits {
		return netip.Prefix{}, ErrSize
	}
	p = p.Masked()
	if !CGNAT.Contains(p.Addr()) || p.Bits() < CGNAT.Bits() {
		return netip.Prefix{}, ErrOutside
	}
	return p, nil
}

// PickRange returns the first /DefaultBits inside 100.64.0.0/10, starting
// at 100.66.0.0 and wrapping around, that overlaps none of used.
func PickRange(used []netip.Prefix) (netip.Prefix, error) {
	base := u32(CGNAT.Addr())
	step := uint32(1) << (32 - DefaultBits)
	total := uint32(1) << (DefaultBits - CGNAT.Bits())
	start := (u32(netip.MustParseAddr("100.66.0.0")) - base) / step
	for i := uint32(0); i < total; i++ {
		idx := (start + i) % total
		cand := netip.PrefixFrom(addr4(base+idx*step), DefaultBits)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, ErrNoRange
}

// Size returns the number of usable host offsets of r: offsets 1 .. Size(r)
// (the network and broadcast addresses are never assigned).
func Size(r netip.Prefix) uint32 {
	return uint32(1)<<(32-r.Bits()) - 2
}

// Allocate returns the lowest host offset of r not in used (sorted or not).
func Allocate(r netip.Prefix, used []uint32) (uint32, error) {
	sorted := slices.Clone(used)
	slices.Sort(sorted)
	next := uint32(1)
	for _, h := range sorted {
		if h < next {
			continue // duplicate or out-of-range low value
		}
		if h > next {
			break
		}
		next++
	}
	if next > Size(r) {
		return 0, ErrExhausted
	}
	return next, nil
}

// Addr4 returns the IPv4 address at host offset h of r.
func Addr4(r netip.Prefix, h uint32) netip.Addr { return addr4(u32(r.Masked().Addr()) + h) }

// Addr6 returns the IPv6 address at host offset h of the v6 range r6.
func Addr6(r6 netip.Prefix, h uint32) netip.Addr {
	b := r6.Masked().Addr().As16()
	lo := binary.BigEndian.Uint32(b[12:]) + h
	binary.BigEndian.PutUint32(b[12:], lo)
	return netip.AddrFrom16(b)
}

// HostOf4 returns the host offset of a inside r, or false.
func HostOf4(r netip.Prefix, a netip.Addr) (uint32, bool) {
	if !r.Contains(a) {
		return 0, false
	}
	h := u32(a) - u32(r.Masked().Addr())
	return h, h >= 1 && h <= Size(r)
}

// Mask returns the dotted IPv4 netmask of r, e.g. 255.255.255.0.
func Mask(r netip.Prefix) string {
	m := ^uint32(0) << (32 - r.Bits())
	return addr4(m).String()
}

// Bits6 is the IPv6 prefix length mirroring an IPv4 prefix length: the host
// part keeps the same number of bits.
func Bits6(bits4 int) int { return 128 - (32 - bits4) }

// NewULA returns a random RFC 4193 prefix for a network whose IPv4 range
// has prefix length bits4: fd00::/8, a 40-bit random global id, subnet id
// 0, and a prefix length of Bits6(bits4).
func NewULA(rnd io.Reader, bits4 int) (netip.Prefix, error) {
	var b [16]byte
	b[0] = 0xfd
	if _, err := io.ReadFull(rnd, b[1:6]); err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), Bits6(bits4)), nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// Source is the key of a per-source limit for a client address: the IPv4
// address itself, or the /64 an IPv6 address lies in (a host or a
// customer usually holds a whole /64, so counting each address apart
// would give one of them 2^64 budgets). IPv4-mapped IPv6 addresses count
// as IPv4.
func Source(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !a.Is6() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}

// SourceString is Source of an address in text; text that is not an
// address is returned as it is.
func SourceString(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return Source(a).String()
}
