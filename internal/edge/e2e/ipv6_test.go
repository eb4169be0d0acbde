//go:build linux

package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/platform/testenv/netns"
)

// An IPv6-only underlay: two hosts, each joined to the router wan by a
// veth with a /64, and the control plane and nucleus on wan's loopback
// address. Every link has the usual 1500-byte MTU; nothing is NATed.
//
//	[a 2001:db8:a::2] --1500-- [wan 2001:db8:a::1 | 2001:db8:b::1, lo 2001:db8:100::1] --1500-- [b 2001:db8:b::2]
const (
	v6Nucleus = "2001:db8:100::1"
	v6A       = "2001:db8:a::2"
	v6B       = "2001:db8:b::2"
)

type v6Topology struct{ wan, a, b string }

func newV6Topology(t *testing.T) *v6Topology {
	t.Helper()
	tag := netns.Tag()
	tp := &v6Topology{wan: netns.New(t, "omnie2e-"+tag+"-wan6"), a: netns.New(t, "omnie2e-"+tag+"-a6"), b: netns.New(t, "omnie2e-"+tag+"-b6")}
	netns.Run(t, "ip", "-n", tp.wan, "addr", "add", v6Nucleus+"/128", "dev", "lo")
	netns.Sysctl(t, tp.wan, "net.ipv6.conf.all.forwarding=1")
	netns.Veth(t, tp.wan, "toA", "2001:db8:a::1/64", tp.a, "wan", v6A+"/64")
	netns.Veth(t, tp.wan, "toB", "2001:db8:b::1/64", tp.b, "wan", v6B+"/64")
	for _, x := range [][2]string{{tp.wan, "toA"}, {tp.wan, "toB"}, {tp.a, "wan"}, {tp.b, "wan"}} {
		netns.Run(t, "ip", "-n", x[0], "link", "set", x[1], "mtu", "1500")
	}
	netns.Run(t, "ip", "-6", "-n", tp.a, "route", "add", "default", "via", "2001:db8:a::1")
	netns.Run(t, "ip", "-6", "-n", tp.b, "route", "add", "default", "via", "2001:db8:b::1")
	return tp
}

// fragCounters sums, in each namespace, the IPv6 fragments it created and
// the ones it received for reassembly (/proc/net/snmp6).
func fragCounters(t *testing.T, nss ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ns := range nss {
		raw := netns.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp6")
		for _, line := range strings.Split(raw, "\n") {
			f := strings.Fields(line)
			if len(f) != 2 || (f[0] != "Ip6FragCreates" && f[0] != "Ip6ReasmReqds") {
				continue
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("snmp6 line %q: %v", line, err)
			}
			out[ns+" "+f[0]] = n
		}
	}
	return out
}

var mtuRE = regexp.MustCompile(` mtu (\d+) `)

// tunnelMTU is the MTU of the edge's tunnel interface.
func tunnelMTU(t *testing.T, e *edge) int {
	t.Helper()
	out := netns.Run(t, "ip", "-n", e.ns, "link", "show", "dev", e.net(t).Interface)
	m := mtuRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MTU in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// pingSize pings dst from ns with a payload of size bytes and the
// don't-fragment flag, until one reply, at most tries times.
func pingSize(ns, dst string, size, tries int) bool {
	for range tries {
		if _, err := netns.RunErr("ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", strconv.Itoa(size), dst); err == nil {
			return true
		}
	}
	return false
}

// Over an IPv6 underlay with 1500-byte links, a full-size packet of the
// tunnel relayed through the nucleus arrives whole: the relay frame (20
// bytes) of a full-size WireGuard packet plus the IPv6 and UDP headers
// still fit in 1500 bytes, so no IPv6 fragment crosses the underlay.
func TestIPv6UnderlayRelayedFullSizeNotFragmented(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary in network namespaces")
	}
	netns.Require(t, "nft", "ping", "ss")
	omniBinaryPath = testenv.OmniBinary(t)
	tp := newV6Topology(t)
	cp := startControlPlaneAt(t, tp.wan, v6Nucleus)
	const owner = "owner6@example.com"
	key := cp.seedUser(t, owner)
	vn := cp.seedNetwork(t, owner, "v6")

	// Only the relay: UDP between the hosts is dropped at the router.
	netns.NFT(t, tp.wan, fmt.Sprintf(`table inet omnie2e_block {
	chain blockfwd {
		type filter hook forward priority filter; policy accept;
		ip6 saddr %[1]s ip6 daddr %[2]s meta l4proto udp drop
		ip6 saddr %[2]s ip6 daddr %[1]s meta l4proto udp drop
	}
}
`, v6A, v6B))
	a := startEdge(t, cp, "a6", tp.a, key, vn)
	b := startEdge(t, cp, "b6", tp.b, key, vn)
	pubB := b.status(t).PublicKey
	vipB4, vipB6 := b.vip4(t), b.vip6(t)
	if !netns.PingOK(tp.a, vipB4, 30) {
		t.Fatal("A cannot ping B through the relay")
	}
	waitFor(t, 30*time.Second, "path A→B relayed", func() bool { return a.pathTo(t, pubB) == daemon.PathRelayed })

	// 1400 is the largest MTU that fits: 1400 + 32 (WireGuard) + 20
	// (relay header) + 48 (IPv6 and UDP) = 1500.
	mtu := tunnelMTU(t, a)
	if mb := tunnelMTU(t, b); mb != mtu || mtu != 1400 {
		t.Errorf("tunnel MTUs %d and %d, want 1400 with the nucleus reached over IPv6", mtu, mb)
	}
	before, relayedBefore := fragCounters(t, tp.a, tp.wan, tp.b), cp.relayed(t)
	// Full-size packets both ways (the echo reply is as large): IPv4 and
	// IPv6 inside the tunnel.
	if !pingSize(tp.a, vipB4, mtu-28, 10) {
		t.Fatalf("a full-size IPv4 packet (tunnel MTU %d) does not cross the relay", mtu)
	}
	if !pingSize(tp.a, vipB6, mtu-48, 10) {
		t.Fatalf("a full-size IPv6 packet (tunnel MTU %d) does not cross the relay", mtu)
	}
	after := fragCounters(t, tp.a, tp.wan, tp.b)
	if relayed := cp.relayed(t); relayed < relayedBefore+4 {
		t.Fatalf("nucleus relayed %v → %v packets: the pings did not go through the relay", relayedBefore, relayed)
	}
	for k, n := range after {
		if n != before[k] {
			t.Errorf("%s %d → %d: relayed full-size packets (tunnel MTU %d) were fragmented on the IPv6 underlay", k, before[k], n, mtu)
		}
	}
	if len(after) != 6 {
		t.Fatalf("fragment counters %v: want two per namespace", after)
	}
}
