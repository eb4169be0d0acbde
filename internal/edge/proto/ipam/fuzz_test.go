package ipam

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"100.66.1.0/24", "100.66.1.77/24", "100.64.0.0/10", "100.127.255.252/30",
		"100.66.1.0/31", "100.0.0.0/8", "10.0.0.0/24", "100.128.0.0/24",
		"fd00::/120", "::ffff:100.66.1.0/120", "", "garbage", "100.66.1.0/024", "1.2.3.4/99",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseRange(s)
		if err != nil {
			if p.IsValid() {
				t.Fatalf("ParseRange(%q) = %v with error %v", s, p, err)
			}
			return
		}
		if !p.Addr().Is4() {
			t.Fatalf("ParseRange(%q) = %v: not IPv4", s, p)
		}
		if p.Bits() < MinBits || p.Bits() > MaxBits {
			t.Fatalf("ParseRange(%q) = %v: size out of bounds", s, p)
		}
		if p.Masked() != p {
			t.Fatalf("ParseRange(%q) = %v: not masked", s, p)
		}
		if !CGNAT.Contains(p.Addr()) || !CGNAT.Contains(Addr4(p, 1<<(32-p.Bits())-1)) {
			t.Fatalf("ParseRange(%q) = %v: outside %v", s, p, CGNAT)
		}
		// The input itself was a prefix that masks to p.
		in, err := netip.ParsePrefix(s)
		if err != nil || in.Masked() != p {
			t.Fatalf("ParseRange(%q) = %v, but the input masks to %v (%v)", s, p, in.Masked(), err)
		}
		// Canonical output parses back to itself.
		if again, err := ParseRange(p.String()); err != nil || again != p {
			t.Fatalf("ParseRange(%q) = %v does not round-trip: %v, %v", s, p, again, err)
		}
		if Size(p) < 2 {
			t.Fatalf("ParseRange(%q) = %v has %d hosts", s, p, Size(p))
		}
	})
}

// FuzzAllocate checks Allocate's invariants for every valid range (from a
// 32-bit address and a prefix length between MinBits and MaxBits) and a
// used set decoded from raw bytes as little-endian uint32s, biased towards
// small host numbers so that collisions happen.
func FuzzAllocate(f *testing.F) {
	enc := func(hs ...uint32) []byte {
		var b []byte
		for _, h := range hs {
			b = binary.LittleEndian.AppendUint32(b, h)
		}
		return b
	}
	f.Add(uint32(0x64420100), uint8(24), enc())
	f.Add(uint32(0x64420100), uint8(24), enc(1, 2, 3, 5))
	f.Add(uint32(0x64420104), uint8(30), enc(1, 2))
	f.Add(uint32(0x64420104), uint8(30), enc(2))
	f.Add(uint32(0x64400000), uint8(10), enc(1, 1, 0, 0xffffffff))
	f.Add(uint32(0x64420100), uint8(29), enc(6, 5, 4, 3, 2, 1))
	f.Add(uint32(0x64420100), uint8(28), enc(0, 15, 16, 14))
	f.Fuzz(func(t *testing.T, addr uint32, bits uint8, raw []byte) {
		bits = MinBits + bits%(MaxBits-MinBits+1)
		// 100.64.0.0/10 is 0x64400000 with 22 free low bits.
		r := netip.PrefixFrom(addr4(0x64400000|addr&0x003fffff), int(bits)).Masked()
		if !CGNAT.Contains(r.Addr()) {
			t.Fatalf("bad test range %v", r)
		}
		size := Size(r)
		var used []uint32
		for i := 0; i+4 <= len(raw) && len(used) < 4096; i += 4 {
			h := binary.LittleEndian.Uint32(raw[i:])
			if h&0x80000000 == 0 {
				h %= min(size+3, 64) // mostly small, in or near the range
			}
			used = append(used, h)
		}
		before := slices.Clone(used)
		h, err := Allocate(r, used)
		if !slices.Equal(before, used) {
			t.Fatalf("Allocate modified used: %v -> %v", before, used)
		}
		inUse := map[uint32]bool{}
		for _, u := range used {
			inUse[u] = true
		}
		// The lowest free host offset, by brute force.
		want, free := uint32(0), false
		for c := uint32(1); c <= size; c++ {
			if !inUse[c] {
				want, free = c, true
				break
			}
		}
		if !free {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Allocate(%v, %v) = %d, %v; want ErrExhausted", r, used, h, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Allocate(%v, %v): %v; host %d is free", r, used, err, want)
		}
		if h != want {
			t.Fatalf("Allocate(%v, %v) = %d, want lowest free %d", r, used, h, want)
		}
		if inUse[h] {
			t.Fatalf("Allocate(%v, %v) = %d, which is in use", r, used, h)
		}
		a := Addr4(r, h)
		if !r.Contains(a) {
			t.Fatalf("Allocate(%v) = %d -> %v outside the range", r, h, a)
		}
		if a == r.Addr() || a == Addr4(r, size+1) {
			t.Fatalf("Allocate(%v) = %d -> %v is the network or broadcast address", r, h, a)
		}
		if back, ok := HostOf4(r, a); !ok || back != h {
			t.Fatalf("HostOf4(%v, %v) = %d, %v; want %d", r, a, back, ok, h)
		}
	})
}
