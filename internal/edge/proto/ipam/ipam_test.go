package ipam

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseRange(t *testing.T) {
	ok := []struct{ in, want string }{
		{"100.66.1.0/24", "100.66.1.0/24"},
		{"100.66.1.77/24", "100.66.1.0/24"}, // masked
		{"100.64.0.0/10", "100.64.0.0/10"},
		{"100.127.255.252/30", "100.127.255.252/30"},
		{"100.127.255.255/30", "100.127.255.252/30"},
		{"100.64.0.0/16", "100.64.0.0/16"},
		{"100.100.0.0/12", "100.96.0.0/12"},
		{"100.70.10.0/23", "100.70.10.0/23"},
	}
	for _, tc := range ok {
		got, err := ParseRange(tc.in)
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tc.in, err)
			continue
		}
		if got != netip.MustParsePrefix(tc.want) {
			t.Errorf("ParseRange(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}

	bad := []struct {
		in   string
		want error // nil: any error
	}{
		{"", nil},
		{"garbage", nil},
		{"100.66.1.0", nil},     // no length
		{"100.66.1.0/33", nil},  // not a prefix
		{"100.66.1.0/-1", nil},  // not a prefix
		{"100.66.1.0/024", nil}, // non-canonical length
		{" 100.66.1.0/24", nil}, // spaces
		{"100.66.1.0/24 ", nil}, // spaces
		{"fd00::/120", nil},     // IPv6
		{"::ffff:100.66.1.0/120", nil},
		{"100.66.1.0/31", ErrSize},
		{"100.66.1.0/32", ErrSize},
		{"100.0.0.0/8", ErrSize},
		{"100.64.0.0/9", ErrSize},
		{"0.0.0.0/0", ErrSize},
		{"10.0.0.0/24", ErrOutside},
		{"192.168.1.0/24", ErrOutside},
		{"100.63.255.0/24", ErrOutside},
		{"100.128.0.0/24", ErrOutside},
		{"101.64.0.0/24", ErrOutside},
		{"100.0.0.0/10", ErrOutside},
		{"100.192.0.0/10", ErrOutside},
	}
	for _, tc := range bad {
		got, err := ParseRange(tc.in)
		if err == nil {
			t.Errorf("ParseRange(%q) = %v, want an error", tc.in, got)
			continue
		}
		if got.IsValid() {
			t.Errorf("ParseRange(%q) returned %v with error %v", tc.in, got, err)
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("ParseRange(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if _, err := ParseRange("fd00::/120"); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Errorf("ParseRange(IPv6) error %v should say IPv4", err)
	}
}

func TestPickRange(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }

	got, err := PickRange(nil)
	if err != nil || got != p("100.66.0.0/24") {
		t.Fatalf("PickRange(nil) = %v, %v; want 100.66.0.0/24", got, err)
	}
	got, err = PickRange([]netip.Prefix{p("100.66.0.0/24"), p("100.66.1.0/24"), p("100.66.3.0/24")})
	if err != nil || got != p("100.66.2.0/24") {
		t.Fatalf("PickRange skipping used = %v, %v; want the gap 100.66.2.0/24", got, err)
	}
	// Overlapping ranges of other sizes block every /24 they touch.
	got, err = PickRange([]netip.Prefix{p("100.66.0.0/16"), p("100.67.0.128/25")})
	if err != nil || got != p("100.67.1.0/24") {
		t.Fatalf("PickRange with /16 and /25 used = %v, %v; want 100.67.1.0/24", got, err)
	}
	got, err = PickRange([]netip.Prefix{p("100.66.0.252/30")})
	if err != nil || got != p("100.66.1.0/24") {
		t.Fatalf("PickRange with a /30 used = %v, %v", got, err)
	}
	// Ranges outside the CGNAT space and IPv6 ranges do not matter.
	got, err = PickRange([]netip.Prefix{p("10.0.0.0/8"), p("fd00::/8")})
	if err != nil || got != p("100.66.0.0/24") {
		t.Fatalf("PickRange with foreign ranges = %v, %v", got, err)
	}
	// When 100.66.0.0 onwards is full it wraps to the start of the space.
	got, err = PickRange([]netip.Prefix{p("100.66.0.0/15"), p("100.68.0.0/14"), p("100.72.0.0/13"), p("100.80.0.0/12"), p("100.96.0.0/11")})
	if err != nil || got != p("100.64.0.0/24") {
		t.Fatalf("PickRange wrapping = %v, %v; want 100.64.0.0/24", got, err)
	}
	got, err = PickRange([]netip.Prefix{p("100.66.0.0/15"), p("100.68.0.0/14"), p("100.72.0.0/13"), p("100.80.0.0/12"), p("100.96.0.0/11"), p("100.64.0.0/23"), p("100.65.0.0/24")})
	if err != nil || got != p("100.64.2.0/24") {
		t.Fatalf("PickRange wrapping past used = %v, %v; want 100.64.2.0/24", got, err)
	}
	// Full.
	if got, err := PickRange([]netip.Prefix{CGNAT}); !errors.Is(err, ErrNoRange) {
		t.Fatalf("PickRange(full) = %v, %v; want ErrNoRange", got, err)
	}
	// Exactly one /24 left: used is the complement of it in the space, one
	// sibling prefix per level from /11 down to /24.
	last := p("100.100.77.0/24")
	var used []netip.Prefix
	for bits := CGNAT.Bits() + 1; bits <= DefaultBits; bits++ {
		mine := netip.PrefixFrom(last.Addr(), bits).Masked()
		sibling := addr4(u32(mine.Addr()) ^ 1<<(32-bits))
		used = append(used, netip.PrefixFrom(sibling, bits))
	}
	if got, err := PickRange(used); err != nil || got != last {
		t.Fatalf("PickRange with one free = %v, %v; want %v", got, err, last)
	}
	if got, err := PickRange(append(used, last)); !errors.Is(err, ErrNoRange) {
		t.Fatalf("PickRange(all /24s) = %v, %v; want ErrNoRange", got, err)
	}
}

// Every picked range is valid input for ParseRange and overlaps none used.
func TestPickRangeSequence(t *testing.T) {
	var used []netip.Prefix
	for range 50 {
		got, err := PickRange(used)
		if err != nil {
			t.Fatal(err)
		}
		if pr, err := ParseRange(got.String()); err != nil || pr != got {
			t.Fatalf("picked %v does not parse back: %v, %v", got, pr, err)
		}
		for _, u := range used {
			if u.Overlaps(got) {
				t.Fatalf("picked %v overlaps used %v", got, u)
			}
		}
		used = append(used, got)
	}
}

func TestSize(t *testing.T) {
	for bits, want := range map[int]uint32{30: 2, 29: 6, 24: 254, 16: 65534, 10: 1<<22 - 2} {
		if got := Size(netip.PrefixFrom(netip.MustParseAddr("100.64.0.0"), bits)); got != want {
			t.Errorf("Size(/%d) = %d, want %d", bits, got, want)
		}
	}
}

func TestAllocate(t *testing.T) {
	r24 := netip.MustParsePrefix("100.66.1.0/24")
	r30 := netip.MustParsePrefix("100.66.1.4/30")
	cases := []struct {
		r    netip.Prefix
		used []uint32
		want uint32
		err  error
	}{
		{r24, nil, 1, nil},
		{r24, []uint32{1}, 2, nil},
		{r24, []uint32{1, 2, 3}, 4, nil},
		{r24, []uint32{1, 2, 4, 5}, 3, nil},             // gap
		{r24, []uint32{5, 4, 2, 1}, 3, nil},             // unsorted
		{r24, []uint32{2, 3}, 1, nil},                   // gap at the start
		{r24, []uint32{1, 1, 2, 2, 3}, 4, nil},          // duplicates
		{r24, []uint32{0, 1, 2}, 3, nil},                // 0 (network) ignored
		{r24, []uint32{255, 300, 1 << 31}, 1, nil},      // out of range ignored
		{r24, []uint32{0}, 1, nil},                      //
		{r30, nil, 1, nil},                              //
		{r30, []uint32{1}, 2, nil},                      //
		{r30, []uint32{2}, 1, nil},                      //
		{r30, []uint32{1, 2}, 0, ErrExhausted},          // /30 has two hosts
		{r30, []uint32{2, 1, 3}, 0, ErrExhausted},       // 3 is broadcast
		{r30, []uint32{0, 1, 2, 3, 4}, 0, ErrExhausted}, //
	}
	for _, tc := range cases {
		before := slices.Clone(tc.used)
		got, err := Allocate(tc.r, tc.used)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Allocate(%v, %v) = %d, %v; want %v", tc.r, tc.used, got, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("Allocate(%v, %v) = %d, %v; want %d", tc.r, tc.used, got, err, tc.want)
		}
		if !slices.Equal(before, tc.used) {
			t.Errorf("Allocate modified its input: %v -> %v", before, tc.used)
		}
	}

	// A full /24: 254 hosts, then exhaustion.
	var used []uint32
	for i := range 254 {
		h, err := Allocate(r24, used)
		if err != nil || h != uint32(i+1) {
			t.Fatalf("allocation %d = %d, %v", i, h, err)
		}
		used = append(used, h)
	}
	if h, err := Allocate(r24, used); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate(full /24) = %d, %v", h, err)
	}
}

func TestAddrMirroring(t *testing.T) {
	r4 := netip.MustParsePrefix("100.66.1.0/24")
	r6 := netip.MustParsePrefix("fd12:3456:789a::/120")
	if Bits6(24) != 120 || Bits6(30) != 126 || Bits6(10) != 106 {
		t.Fatalf("Bits6: %d %d %d", Bits6(24), Bits6(30), Bits6(10))
	}
	cases := []struct {
		h      uint32
		v4, v6 string
	}{
		{1, "100.66.1.1", "fd12:3456:789a::1"},
		{5, "100.66.1.5", "fd12:3456:789a::5"},
		{200, "100.66.1.200", "fd12:3456:789a::c8"},
		{254, "100.66.1.254", "fd12:3456:789a::fe"},
	}
	for _, tc := range cases {
		if got := Addr4(r4, tc.h); got != netip.MustParseAddr(tc.v4) {
			t.Errorf("Addr4(%d) = %v, want %s", tc.h, got, tc.v4)
		}
		a6 := Addr6(r6, tc.h)
		if a6 != netip.MustParseAddr(tc.v6) {
			t.Errorf("Addr6(%d) = %v, want %s", tc.h, a6, tc.v6)
		}
		if !r6.Contains(a6) {
			t.Errorf("Addr6(%d) = %v outside %v", tc.h, a6, r6)
		}
		// The low bytes mirror: same host part in both families.
		b4, b6 := Addr4(r4, tc.h).As4(), a6.As16()
		if b4[3] != b6[15] {
			t.Errorf("host byte %d vs %d", b4[3], b6[15])
		}
		if h, ok := HostOf4(r4, Addr4(r4, tc.h)); !ok || h != tc.h {
			t.Errorf("HostOf4(Addr4(%d)) = %d, %v", tc.h, h, ok)
		}
	}
	// Unmasked inputs are masked.
	if got := Addr4(netip.MustParsePrefix("100.66.1.77/24"), 5); got != netip.MustParseAddr("100.66.1.5") {
		t.Errorf("Addr4(unmasked) = %v", got)
	}
	if got := Addr6(netip.MustParsePrefix("fd12:3456:789a::77/120"), 5); got != netip.MustParseAddr("fd12:3456:789a::5") {
		t.Errorf("Addr6(unmasked) = %v", got)
	}
	// A wider range carries into the next byte on both sides.
	r4w, r6w := netip.MustParsePrefix("100.64.0.0/16"), netip.MustParsePrefix("fd00:1:2::/112")
	if got := Addr4(r4w, 0x1234); got != netip.MustParseAddr("100.64.18.52") {
		t.Errorf("Addr4(/16, 0x1234) = %v", got)
	}
	if got := Addr6(r6w, 0x1234); got != netip.MustParseAddr("fd00:1:2::1234") {
		t.Errorf("Addr6(/112, 0x1234) = %v", got)
	}
}

func TestHostOf4(t *testing.T) {
	r := netip.MustParsePrefix("100.66.1.0/24")
	cases := []struct {
		a    string
		h    uint32
		ok   bool
		note string
	}{
		{"100.66.1.1", 1, true, "first"},
		{"100.66.1.254", 254, true, "last"},
		{"100.66.1.0", 0, false, "network"},
		{"100.66.1.255", 255, false, "broadcast"},
		{"100.66.2.1", 0, false, "outside"},
		{"fd00::1", 0, false, "v6"},
	}
	for _, tc := range cases {
		h, ok := HostOf4(r, netip.MustParseAddr(tc.a))
		if ok != tc.ok || (tc.ok && h != tc.h) {
			t.Errorf("HostOf4(%s) [%s] = %d, %v; want %d, %v", tc.a, tc.note, h, ok, tc.h, tc.ok)
		}
	}
	r30 := netip.MustParsePrefix("100.66.1.4/30")
	for a, want := range map[string]bool{"100.66.1.4": false, "100.66.1.5": true, "100.66.1.6": true, "100.66.1.7": false, "100.66.1.8": false} {
		if _, ok := HostOf4(r30, netip.MustParseAddr(a)); ok != want {
			t.Errorf("HostOf4(/30, %s) ok = %v, want %v", a, ok, want)
		}
	}
}

func TestMask(t *testing.T) {
	for bits, want := range map[int]string{10: "255.192.0.0", 16: "255.255.0.0", 23: "255.255.254.0", 24: "255.255.255.0", 30: "255.255.255.252", 32: "255.255.255.255", 0: "0.0.0.0"} {
		if got := Mask(netip.PrefixFrom(netip.MustParseAddr("100.64.0.0"), bits)); got != want {
			t.Errorf("Mask(/%d) = %s, want %s", bits, got, want)
		}
	}
}

func TestNewULA(t *testing.T) {
	for _, bits4 := range []int{10, 16, 24, 30} {
		p, err := NewULA(rand.Reader, bits4)
		if err != nil {
			t.Fatal(err)
		}
		b := p.Addr().As16()
		if b[0] != 0xfd {
			t.Errorf("ULA %v does not start with fd", p)
		}
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			t.Errorf("ULA %v is not IPv6", p)
		}
		if p.Bits() != Bits6(bits4) || 128-p.Bits() != 32-bits4 {
			t.Errorf("ULA /%d for /%d, want /%d", p.Bits(), bits4, Bits6(bits4))
		}
		if p.Masked() != p {
			t.Errorf("ULA %v is not masked", p)
		}
		if !netip.MustParsePrefix("fd00::/8").Contains(p.Addr()) {
			t.Errorf("ULA %v outside fd00::/8", p)
		}
		// Subnet id and interface id are zero: only the 40-bit global id is random.
		if !bytes.Equal(b[6:], make([]byte, 10)) {
			t.Errorf("ULA %v has non-zero bytes after the global id", p)
		}
	}

	// Deterministic given the random source: the global id is its first 5 bytes.
	p, err := NewULA(bytes.NewReader([]byte{1, 2, 3, 4, 5, 6, 7}), 24)
	if err != nil || p != netip.MustParsePrefix("fd01:203:405::/120") {
		t.Fatalf("NewULA(fixed) = %v, %v", p, err)
	}
	// Random: two draws differ.
	a, _ := NewULA(rand.Reader, 24)
	b, _ := NewULA(rand.Reader, 24)
	if a == b {
		t.Fatalf("two random ULAs are equal: %v", a)
	}
	// A failing or short source is an error.
	if _, err := NewULA(iotest.ErrReader(errors.New("boom")), 24); err == nil {
		t.Fatal("NewULA with a failing reader succeeded")
	}
	if _, err := NewULA(bytes.NewReader([]byte{1, 2}), 24); err == nil {
		t.Fatal("NewULA with a short reader succeeded")
	}
}

// The addresses a join reports for a ULA range and its v4 range line up.
func TestULAMirrorsRange(t *testing.T) {
	r4, err := ParseRange("100.66.1.0/24")
	if err != nil {
		t.Fatal(err)
	}
	r6, err := NewULA(bytes.NewReader([]byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee}), r4.Bits())
	if err != nil {
		t.Fatal(err)
	}
	h, err := Allocate(r4, []uint32{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := Addr4(r4, h); got != netip.MustParseAddr("100.66.1.5") {
		t.Fatalf("Addr4 = %v", got)
	}
	if got := Addr6(r6, h); got != netip.MustParseAddr("fdaa:bbcc:ddee::5") {
		t.Fatalf("Addr6 = %v", got)
	}
	if r6.String() != "fdaa:bbcc:ddee::/120" {
		t.Fatalf("r6 = %v", r6)
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":                  "198.51.100.7",
		"::ffff:198.51.100.7":           "198.51.100.7",
		"2001:db8:1:2::1":               "2001:db8:1:2::",
		"2001:db8:1:2:ffff:ffff:ffff:1": "2001:db8:1:2::",
		"2001:db8:1:3::1":               "2001:db8:1:3::",
		"not an address":                "not an address",
		"":                              "",
	} {
		if got := SourceString(in); got != want {
			t.Errorf("SourceString(%q) = %q, want %q", in, got, want)
		}
	}
}
