package settings

import (
	"net/netip"
	"testing"
)

// The filter's decisions for IPv4 and IPv6 clients, block over allow,
// the loopback rule and IPv4-mapped client addresses.
func TestFilterRefuses(t *testing.T) {
	c, err := compile(IPFilter{Enabled: true, Allow: []string{"2001:db8::/32", "10.0.0.0/8"},
		Block: []string{"2001:db8:bad::/48", "10.9.9.9"}, ApplyTo: []string{"gateway", "management", "gateway"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.doc.ApplyTo) != 2 {
		t.Fatalf("applyTo not deduplicated: %v", c.doc.ApplyTo)
	}
	for _, tc := range []struct {
		addr       string
		management bool
		refused    bool
	}{
		{"2001:db8::1", false, false},
		{"2001:db8:bad::1", false, true},
		{"2001:db9::1", false, true},
		{"10.1.2.3", false, false},
		{"::ffff:10.1.2.3", false, false},
		{"10.9.9.9", false, true},
		{"::ffff:10.9.9.9", true, true},
		{"192.0.2.1", true, true},
		{"127.0.0.1", false, true}, // the gateway side has no loopback rule
		{"127.0.0.1", true, false},
		{"::1", true, false},
		{"", false, true}, // no address: refused while a filter applies
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		if got := c.refuses(a, tc.management); got != tc.refused {
			t.Errorf("%s (management %v): refused %v, want %v", tc.addr, tc.management, got, tc.refused)
		}
	}

	// A broad block keeps loopback management; an entry inside the
	// loopback range takes it.
	broad, _ := compile(IPFilter{Enabled: true, Block: []string{"0.0.0.0/0", "::/0", "127.0.0.0/7"}})
	if broad.refuses(netip.MustParseAddr("127.0.0.1"), true) || broad.refuses(netip.MustParseAddr("::1"), true) {
		t.Error("a broad block took loopback management")
	}
	for _, e := range []string{"127.0.0.0/8", "127.0.0.1", "::1"} {
		named, _ := compile(IPFilter{Enabled: true, Block: []string{e}})
		a := netip.MustParseAddr("127.0.0.1")
		if e == "::1" {
			a = netip.IPv6Loopback()
		}
		if !named.refuses(a, true) {
			t.Errorf("block %s did not take loopback management", e)
		}
	}
	if _, err := compile(IPFilter{Enabled: true, Block: []string{"::ffff:10.0.0.0/104"}}); err == nil {
		t.Error("an IPv4-mapped CIDR was accepted")
	}
	if _, err := compile(IPFilter{Enabled: true, Block: []string{"fe80::1%eth0"}}); err == nil {
		t.Error("an address with a zone was accepted")
	}
}
