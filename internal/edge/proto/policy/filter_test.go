package policy

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

const (
	laptop4, robot4, outsider4, ci4 = "100.66.0.2", "100.66.0.10", "100.66.1.5", "100.66.0.20"
	laptop6, robot6, outsider6      = "fd00::2", "fd00::10", "fd00::1:5"
	syn, synAck, ack, fin, rst      = tcpSYN, tcpSYN | tcpACK, tcpACK, tcpFIN | tcpACK, tcpRST
)

// robotFilter is robot's filter for testPolicy, carrying 10.1.0.0/24, on
// a fake clock.
func robotFilter(t testing.TB) (*Filter, *fakeClock) {
	clk := newFakeClock()
	return mustCompile(t, testPolicy, robot, "10.1.0.0/24").WithConntrack(NewConntrack(0, clk.Now)), clk
}

func TestInbound(t *testing.T) {
	f, _ := robotFilter(t)
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"tcp 22 from the group", tcpPkt(laptop4, robot4, 50000, 22, syn), true},
		{"tcp 22 from the group, IPv6", tcpPkt(laptop6, robot6, 50000, 22, syn), true},
		{"tcp 80 from the group", tcpPkt(laptop4, robot4, 50000, 80, syn), false},
		{"tcp 22 from outside the group", tcpPkt(outsider4, robot4, 50000, 22, syn), false},
		{"icmp echo from the group", icmpPkt(laptop4, robot4, 8, 7, nil), false},
		{"icmp echo from the tag", icmpPkt(ci4, robot4, 8, 7, nil), true},
		{"icmpv6 echo from the tag", icmpPkt("fd00::20", robot6, 128, 7, nil), true},
		{"udp 53 from anyone", udpPkt(outsider4, robot4, 5353, 53), true},
		{"udp 53 from anyone, IPv6", udpPkt(outsider6, robot6, 5353, 53), true},
		{"to the subnet route", tcpPkt(laptop4, "10.1.0.7", 50000, 3389, syn), true},
		{"to the subnet route, not allowed", udpPkt(outsider4, "10.1.0.7", 50000, 53), false},
		{"to an address not ours", tcpPkt(laptop4, "100.66.0.11", 50000, 22, syn), false},
		{"gre from the route's user", ipPkt(laptop4, "10.1.0.7", 47, make([]byte, 4)), true},
		{"gre elsewhere", ipPkt(laptop4, robot4, 47, make([]byte, 4)), false},
		{"neighbour solicitation", ndPkt(135, 255), true},
		{"neighbour solicitation, routed", ndPkt(135, 64), false},
		{"redirect", ndPkt(137, 255), false},
		{"non-first fragment", frag4(ipPkt(outsider4, robot4, ProtoTCP, make([]byte, 64)), 10, true), true},
		{"non-first fragment, IPv6", frag6(ipPkt(outsider6, robot6, ProtoUDP, make([]byte, 64)), 10, false), true},
		{"non-first fragment, IPv6, payload like a header", frag6(ipPkt(outsider6, robot6, 60, append([]byte{60, 200}, make([]byte, 30)...)), 10, false), true},
		{"first fragment, denied", frag4(tcpPkt(outsider4, robot4, 50000, 22, syn), 0, true), false},
		{"first fragment, allowed", frag4(tcpPkt(laptop4, robot4, 50000, 22, syn), 0, true), true},
		{"first fragment, IPv6, allowed", frag6(tcpPkt(laptop6, robot6, 50000, 22, syn), 0, true), true},
		{"first fragment, IPv6, denied", frag6(tcpPkt(laptop6, robot6, 50000, 23, syn), 0, true), false},
		{"tiny first fragment", frag4(ipPkt(laptop4, robot4, ProtoTCP, tcpHdr(50000, 22, syn)[:8]), 0, true), false},
		{"not IP", []byte{0x10, 1, 2, 3}, false},
		{"empty", nil, false},
	} {
		if got := f.Inbound(tc.pkt); got != tc.want {
			t.Errorf("%s: Inbound = %v; want %v", tc.name, got, tc.want)
		}
	}
	var nilFilter *Filter
	if !nilFilter.Inbound([]byte{1}) || !AllowAll().Inbound(nil) {
		t.Error("nil or AllowAll filter drops")
	}
	nilFilter.Outbound(tcpPkt(robot4, outsider4, 1, 2, syn))
}

func ndPkt(typ, hop uint8) []byte {
	b := icmpPkt("fe80::1", "ff02::1:ff00:10", typ, 0, make([]byte, 16))
	b[7] = hop
	return b
}

func TestReplies(t *testing.T) {
	f, _ := robotFilter(t)
	check := func(name string, pkt []byte, want bool) {
		t.Helper()
		if got := f.Inbound(pkt); got != want {
			t.Errorf("%s: Inbound = %v; want %v", name, got, want)
		}
	}
	// TCP: our SYN makes the answer pass, only for that flow.
	check("syn-ack before", tcpPkt(outsider4, robot4, 443, 40000, synAck), false)
	f.Outbound(tcpPkt(robot4, outsider4, 40000, 443, syn))
	check("syn-ack", tcpPkt(outsider4, robot4, 443, 40000, synAck), true)
	check("other port", tcpPkt(outsider4, robot4, 443, 40001, synAck), false)
	check("other peer", tcpPkt(laptop4, robot4, 443, 40000, synAck), false)
	check("the peer opening its own", tcpPkt(outsider4, robot4, 40000, 443, syn), false)
	// A packet that is no SYN starts nothing.
	f.Outbound(tcpPkt(robot4, outsider4, 40002, 443, ack))
	check("after a lone ack", tcpPkt(outsider4, robot4, 443, 40002, ack), false)
	// UDP.
	f.Outbound(udpPkt(robot4, outsider4, 5000, 53))
	check("udp answer", udpPkt(outsider4, robot4, 53, 5000), true)
	check("udp answer, other port", udpPkt(outsider4, robot4, 53, 5001), false)
	// IPv6.
	f.Outbound(tcpPkt(robot6, outsider6, 40000, 443, syn))
	check("syn-ack, IPv6", tcpPkt(outsider6, robot6, 443, 40000, synAck), true)
	check("syn-ack, IPv6, other port", tcpPkt(outsider6, robot6, 443, 40001, synAck), false)
	// ICMP echo, by identifier.
	f.Outbound(icmpPkt(robot4, outsider4, 8, 77, nil))
	check("echo reply", icmpPkt(outsider4, robot4, 0, 77, nil), true)
	check("echo reply, other id", icmpPkt(outsider4, robot4, 0, 78, nil), false)
	check("echo request back", icmpPkt(outsider4, robot4, 8, 77, nil), false)
	f.Outbound(icmpPkt(robot6, outsider6, 128, 77, nil))
	check("echo reply, IPv6", icmpPkt(outsider6, robot6, 129, 77, nil), true)
	// A subnet router's forwarded flows.
	f.Outbound(udpPkt("10.1.0.7", outsider4, 6000, 7000))
	check("to the forwarded flow", udpPkt(outsider4, "10.1.0.7", 7000, 6000), true)
	// Replies to what the rules let in are not tracked: they need no state.
	n := f.ct.Len()
	f.Outbound(udpPkt(robot4, outsider4, 53, 5353))
	f.Outbound(tcpPkt(robot4, laptop4, 22, 50000, synAck))
	if f.ct.Len() != n {
		t.Errorf("replies to allowed flows tracked: %d flows, want %d", f.ct.Len(), n)
	}
}

func TestICMPErrors(t *testing.T) {
	f, _ := robotFilter(t)
	ourSyn := tcpPkt(robot4, outsider4, 40000, 443, syn)
	f.Outbound(ourSyn)
	unreach := func(from string, quoted []byte) []byte { return icmpPkt(from, robot4, 3, 0, quoted[:28]) }
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"unreachable about our flow", unreach(outsider4, ourSyn), true},
		{"from a router on the way", unreach("10.9.9.9", ourSyn), true},
		{"time exceeded about our flow", icmpPkt("10.9.9.9", robot4, 11, 0, ourSyn), true},
		{"about another flow", unreach(outsider4, tcpPkt(robot4, outsider4, 40001, 443, syn)), false},
		{"about someone else's packet", unreach(outsider4, tcpPkt(laptop4, outsider4, 40000, 443, syn)), false},
		{"about our reply to an allowed flow", unreach(laptop4, tcpPkt(robot4, laptop4, 22, 50000, synAck)), true},
		{"about our reply to a denied flow", unreach(laptop4, tcpPkt(robot4, laptop4, 23, 50000, synAck)), false},
		{"quote cut short", unreach(outsider4, ourSyn)[:20+8+22], false},
		{"quote of a non-first fragment", unreach(outsider4, frag4(tcpPkt(robot4, outsider4, 40000, 443, syn), 3, false)), false},
		{"redirect", icmpPkt(outsider4, robot4, 5, 0, ourSyn[:28]), false},
	} {
		if got := f.Inbound(tc.pkt); got != tc.want {
			t.Errorf("%s: Inbound = %v; want %v", tc.name, got, tc.want)
		}
	}
	// IPv6 packet too big about our flow and our echo.
	syn6 := tcpPkt(robot6, outsider6, 40000, 443, syn)
	f.Outbound(syn6)
	if !f.Inbound(icmpPkt(outsider6, robot6, 2, 0, syn6)) {
		t.Error("packet too big about our flow dropped")
	}
	echo6 := icmpPkt(robot6, outsider6, 128, 9, nil)
	f.Outbound(echo6)
	if !f.Inbound(icmpPkt("fd00::9:9", robot6, 3, 0, echo6)) || f.Inbound(icmpPkt("fd00::9:9", robot6, 3, 0, icmpPkt(robot6, outsider6, 128, 10, nil))) {
		t.Error("time exceeded about our echo")
	}
}

func TestConntrackExpiry(t *testing.T) {
	f, clk := robotFilter(t)
	for _, tc := range []struct {
		name       string
		out, reply []byte
		idle       time.Duration
	}{
		{"tcp", tcpPkt(robot4, outsider4, 40000, 443, syn), tcpPkt(outsider4, robot4, 443, 40000, ack), TCPTimeout},
		{"udp", udpPkt(robot4, outsider4, 40000, 443), udpPkt(outsider4, robot4, 443, 40000), UDPTimeout},
		{"icmp", icmpPkt(robot4, outsider4, 8, 40000, nil), icmpPkt(outsider4, robot4, 0, 40000, nil), ICMPTimeout},
		{"other", ipPkt(robot4, outsider4, 47, nil), ipPkt(outsider4, robot4, 47, nil), UDPTimeout},
	} {
		f.Outbound(tc.out)
		clk.Advance(tc.idle - time.Second)
		if !f.Inbound(tc.reply) {
			t.Errorf("%s: reply dropped before the timeout", tc.name)
		}
		clk.Advance(tc.idle - time.Second) // the reply kept it alive
		if !f.Inbound(tc.reply) {
			t.Errorf("%s: reply dropped although the flow was refreshed", tc.name)
		}
		clk.Advance(tc.idle)
		if f.Inbound(tc.reply) {
			t.Errorf("%s: reply passes after %v idle", tc.name, tc.idle)
		}
		// Our own packets refresh it too.
		f.Outbound(tc.out)
		clk.Advance(tc.idle - time.Second)
		f.Outbound(tc.out)
		clk.Advance(tc.idle - time.Second)
		if !f.Inbound(tc.reply) {
			t.Errorf("%s: reply dropped although our packets refreshed the flow", tc.name)
		}
		clk.Advance(tc.idle + time.Second)
	}
	// FIN or RST: the flow lingers TCPClosingTimeout, from either side; a
	// new SYN reopens it.
	for _, ours := range []bool{true, false} {
		f.Outbound(tcpPkt(robot4, outsider4, 41000, 443, syn))
		if ours {
			f.Outbound(tcpPkt(robot4, outsider4, 41000, 443, fin))
		} else if !f.Inbound(tcpPkt(outsider4, robot4, 443, 41000, rst)) {
			t.Error("rst dropped")
		}
		clk.Advance(TCPClosingTimeout - time.Second)
		if !f.Inbound(tcpPkt(outsider4, robot4, 443, 41000, ack)) {
			t.Error("last ack dropped")
		}
		clk.Advance(TCPClosingTimeout)
		if f.Inbound(tcpPkt(outsider4, robot4, 443, 41000, ack)) {
			t.Error("closed flow still passes")
		}
	}
	f.Outbound(tcpPkt(robot4, outsider4, 41000, 443, fin))
	f.Outbound(tcpPkt(robot4, outsider4, 41000, 443, syn))
	clk.Advance(TCPClosingTimeout + time.Second)
	if !f.Inbound(tcpPkt(outsider4, robot4, 443, 41000, synAck)) {
		t.Error("a new SYN did not reopen the flow")
	}
}

func TestConntrackSize(t *testing.T) {
	clk := newFakeClock()
	f := mustCompile(t, `{"rules": []}`, robot).WithConntrack(NewConntrack(64, clk.Now))
	for port := range uint16(100) {
		f.Outbound(udpPkt(robot4, outsider4, 10000+port, 53))
	}
	if n := f.ct.Len(); n != 64 {
		t.Errorf("%d flows; want 64", n)
	}
	for port := range uint16(100) {
		if got, want := f.Inbound(udpPkt(outsider4, robot4, 53, 10000+port)), port >= 36; got != want {
			t.Errorf("reply to flow %d: %v; want %v (the oldest flows evicted)", port, got, want)
		}
	}
	// The least recently used goes first: refresh flow 36, add one more.
	f.Outbound(udpPkt(robot4, outsider4, 10036, 53))
	f.Outbound(udpPkt(robot4, outsider4, 20000, 53))
	if !f.Inbound(udpPkt(outsider4, robot4, 53, 10036)) || f.Inbound(udpPkt(outsider4, robot4, 53, 10037)) {
		t.Error("eviction is not least recently used")
	}
	// Expired flows at the cold end make room before live ones go.
	clk.Advance(UDPTimeout + time.Second)
	for port := range uint16(4) {
		f.Outbound(udpPkt(robot4, outsider4, 30000+port, 53))
	}
	if n := f.ct.Len(); n > 64 {
		t.Errorf("%d flows; want at most 64", n)
	}

	// The default table: shards, bounded at MaxFlows, newest kept.
	f = f.WithConntrack(NewConntrack(0, clk.Now))
	const n = MaxFlows + 5000
	for i := range n {
		f.Outbound(udpPkt(robot4, fmt.Sprintf("100.66.%d.%d", 2+i>>16, i>>8&0xff), uint16(i), 53))
	}
	if got := f.ct.Len(); got > MaxFlows || got < MaxFlows*9/10 {
		t.Errorf("%d flows; want at most %d, nearly full", got, MaxFlows)
	}
	for i := n - 1000; i < n; i++ {
		if !f.Inbound(udpPkt(fmt.Sprintf("100.66.%d.%d", 2+i>>16, i>>8&0xff), robot4, 53, uint16(i))) {
			t.Fatalf("reply to recent flow %d dropped", i)
		}
	}
}

func TestAtomicSwap(t *testing.T) {
	clk := newFakeClock()
	a := NewAtomic(NewConntrack(0, clk.Now))
	if !a.Load().Inbound(tcpPkt(outsider4, robot4, 1, 2, syn)) {
		t.Fatal("a new Atomic does not allow all")
	}
	// Flows started under the old filter survive the swap.
	a.Load().Outbound(tcpPkt(robot4, outsider4, 40000, 443, syn))
	a.Load().Outbound(udpPkt(robot4, outsider4, 40000, 53)) // allowed back under AllowAll: not tracked
	compiled := mustCompile(t, testPolicy, robot)
	a.Store(compiled)
	if a.Load() == compiled || a.Load().ct != a.ct || compiled.ct == a.ct {
		t.Error("Store does not bind a copy to the holder's conntrack")
	}
	if !a.Load().Inbound(tcpPkt(outsider4, robot4, 443, 40000, synAck)) {
		t.Error("flow lost in the swap")
	}
	if a.Load().Inbound(udpPkt(outsider4, robot4, 53, 40000)) {
		t.Error("untracked flow passes")
	}
	a.Load().Outbound(udpPkt(robot4, outsider4, 40000, 53)) // now it is tracked
	if !a.Load().Inbound(udpPkt(outsider4, robot4, 53, 40000)) {
		t.Error("udp flow not tracked under the policy")
	}
	// Revoking access closes what the old policy let in.
	if !a.Load().Inbound(udpPkt(outsider4, robot4, 5353, 53)) {
		t.Fatal("udp 53 dropped")
	}
	a.Load().Outbound(udpPkt(robot4, outsider4, 53, 5353))
	a.Store(mustCompile(t, `{"rules": []}`, robot))
	if a.Load().Inbound(udpPkt(outsider4, robot4, 5353, 53)) {
		t.Error("revoked flow passes")
	}
	a.Store(nil)
	if !a.Load().Inbound(udpPkt(outsider4, robot4, 5353, 53)) {
		t.Error("Store(nil) is not AllowAll")
	}
}

// TestConcurrent runs filters swapped live under packets from several
// goroutines (for the race detector).
func TestConcurrent(t *testing.T) {
	a := NewAtomic(nil)
	policies := []*Filter{mustCompile(t, testPolicy, robot), AllowAll(), mustCompile(t, `{"rules": []}`, robot)}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				port := uint16(g*10000 + i)
				a.Load().Outbound(tcpPkt(robot4, outsider4, port, 443, syn))
				if !a.Load().Inbound(tcpPkt(outsider4, robot4, 443, port, synAck)) {
					t.Errorf("reply %d dropped", port)
					return
				}
				a.Load().Inbound(udpPkt(outsider4, robot4, port, 53))
			}
		})
	}
	wg.Go(func() {
		for i := range 300 {
			a.Store(policies[i%len(policies)])
		}
	})
	wg.Wait()
}

func TestNoAllocations(t *testing.T) {
	f, _ := robotFilter(t)
	f.Outbound(tcpPkt(robot4, outsider4, 40000, 443, syn))
	f.Outbound(tcpPkt(robot6, outsider6, 40000, 443, syn))
	pkts := [][]byte{
		tcpPkt(laptop4, robot4, 50000, 22, syn),                                      // allowed by a rule
		tcpPkt(laptop6, robot6, 50000, 22, syn),                                      // allowed, IPv6
		tcpPkt(outsider4, robot4, 50000, 22, syn),                                    // dropped
		tcpPkt(outsider4, robot4, 443, 40000, ack),                                   // reply
		tcpPkt(outsider6, robot6, 443, 40000, ack),                                   // reply, IPv6
		icmpPkt(outsider4, robot4, 3, 0, tcpPkt(robot4, outsider4, 40000, 443, syn)), // related error
	}
	out := tcpPkt(robot4, outsider4, 40000, 443, ack)
	if n := testing.AllocsPerRun(200, func() {
		for _, p := range pkts {
			f.Inbound(p)
		}
		f.Outbound(out)
	}); n != 0 {
		t.Errorf("%v allocations per run; want 0", n)
	}
}

// TestMalformed feeds every truncation and some corruptions of valid
// packets: nothing panics, and a packet cut inside its headers is dropped.
func TestMalformed(t *testing.T) {
	f, _ := robotFilter(t)
	for _, p := range seedPackets() {
		for n := range len(p) {
			f.Outbound(p[:n])
			if f.Inbound(p[:n]) && n < 20 {
				t.Errorf("%x passes", p[:n])
			}
		}
		for i := range min(len(p), 48) {
			q := append([]byte{}, p...)
			for _, v := range []byte{0, 0xff, q[i] + 1} {
				q[i] = v
				f.Inbound(q)
				f.Outbound(q)
			}
		}
	}
	// Extension header chains: too long, or running past the end.
	p := tcpPkt(laptop6, robot6, 50000, 22, syn)
	for range 9 {
		p = frag6(p, 0, false)
	}
	if f.Inbound(p) {
		t.Error("nine extension headers pass")
	}
	p = tcpPkt(laptop6, robot6, 50000, 22, syn)
	p[6] = 60 // destination options, 8*(1+p[41]) bytes
	p[41] = 200
	if f.Inbound(p) {
		t.Error("an extension header past the end passes")
	}
	// Length fields larger than the packet.
	p = tcpPkt(laptop4, robot4, 50000, 22, syn)
	p[3]++
	if f.Inbound(p) {
		t.Error("IPv4 total length past the end passes")
	}
	p = tcpPkt(laptop4, robot4, 50000, 22, syn)
	p[0] = 0x4f
	if f.Inbound(p) {
		t.Error("IPv4 header length past the end passes")
	}
	// Padding after the datagram is ignored.
	if p := tcpPkt(laptop4, robot4, 50000, 22, syn); !f.Inbound(append(p, 0, 0, 0, 0)) {
		t.Error("padded packet dropped")
	}
}

func seedPackets() [][]byte {
	return [][]byte{
		tcpPkt(laptop4, robot4, 50000, 22, syn),
		tcpPkt(laptop6, robot6, 50000, 22, syn),
		udpPkt(outsider4, robot4, 5353, 53),
		icmpPkt(ci4, robot4, 8, 1, []byte("ping")),
		icmpPkt(outsider4, robot4, 3, 0, tcpPkt(robot4, outsider4, 40000, 443, syn)),
		icmpPkt(outsider6, robot6, 2, 0, udpPkt(robot6, outsider6, 40000, 443)),
		frag6(tcpPkt(laptop6, robot6, 50000, 22, syn), 0, true),
		frag4(udpPkt(outsider4, robot4, 5353, 53), 0, true),
		ndPkt(135, 255),
	}
}
