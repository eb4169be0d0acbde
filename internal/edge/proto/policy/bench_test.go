package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// bench100 is a 100-rule policy over 200 members in 20 groups, compiled
// for member m0 (100.66.0.10) carrying 10.1.0.0/16, and packets that
// exercise it.
func bench100(b *testing.B) (f *Filter, accept, drop, reply []byte) {
	var ms []Member
	var groups []string
	for i := range 200 {
		ms = append(ms, member(fmt.Sprintf("dev_m%d", i), fmt.Sprintf("m%d", i),
			fmt.Sprintf("100.66.%d.%d", i/250, 10+i%250), fmt.Sprintf("fd00::%x", 0x100+i), fmt.Sprintf("tag:t%d", i%5)))
	}
	for g := range 20 {
		var names []string
		for i := g * 10; i < g*10+10; i++ {
			names = append(names, fmt.Sprintf("%q", ms[i].Label))
		}
		groups = append(groups, fmt.Sprintf("%q: [%s]", fmt.Sprintf("group:g%d", g), strings.Join(names, ", ")))
	}
	var rules []string
	for r := range 100 {
		var src, dst string
		switch r % 4 {
		case 0:
			src = fmt.Sprintf(`"group:g%d"`, r%20)
		case 1:
			src = fmt.Sprintf(`"m%d", "m%d"`, (r*7)%200, (r*13)%200)
		case 2:
			src = fmt.Sprintf(`"100.66.%d.0/28", "tag:t%d"`, r%3, r%5)
		case 3:
			src = fmt.Sprintf(`"10.%d.0.0/16"`, r)
		}
		switch r % 3 {
		case 0:
			dst = fmt.Sprintf(`"m0:%d", "m1:%d-%d"`, 1000+r, 2000+r, 2010+r)
		case 1:
			dst = fmt.Sprintf(`"m0:%d,%d", "10.1.%d.0/24:*"`, 3000+r, 4000+r, r)
		case 2:
			dst = fmt.Sprintf(`"group:g0:%d", "*:%d"`, 5000+r, 6000+r)
		}
		rules = append(rules, fmt.Sprintf(`{"action": "accept", "src": [%s], "dst": [%s], "proto": %q}`, src, dst, []string{"tcp", "udp", "*"}[r%3]))
	}
	doc := fmt.Sprintf(`{"groups": {%s}, "rules": [%s]}`, strings.Join(groups, ", "), strings.Join(rules, ",\n"))
	p, err := Parse([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	dir := NewDirectory(ms)
	if err := p.Validate(dir); err != nil {
		b.Fatal(err)
	}
	f, err = p.Compile(dir, ms[0], []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")})
	if err != nil {
		b.Fatal(err)
	}
	// Rule 96 lets group:g16 (m160 …) reach m0:1096 over TCP, nothing 1097.
	accept = tcpPkt(ms[160].Addr4.String(), "100.66.0.10", 40000, 1096, tcpSYN)
	drop = tcpPkt(ms[160].Addr4.String(), "100.66.0.10", 40000, 1097, tcpSYN)
	f.Outbound(tcpPkt("100.66.0.10", "100.66.0.199", 40000, 443, tcpSYN))
	reply = tcpPkt("100.66.0.199", "100.66.0.10", 443, 40000, tcpACK)
	for _, c := range []struct {
		p    []byte
		want bool
	}{{accept, true}, {drop, false}, {reply, true}} {
		if f.Inbound(c.p) != c.want {
			b.Fatalf("bench packet %x: want %v", c.p, c.want)
		}
	}
	return f, accept, drop, reply
}

// BenchmarkInbound compares a 100-rule policy with AllowAll on the same
// mix of packets (one accepted by a rule, one dropped, one reply), then
// each kind alone.
func BenchmarkInbound(b *testing.B) {
	f, accept, drop, reply := bench100(b)
	mix := [][]byte{accept, drop, reply}
	run := func(f *Filter, pkts ...[]byte) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				f.Inbound(pkts[i%len(pkts)])
			}
		}
	}
	b.Run("AllowAll", run(AllowAll(), mix...))
	b.Run("Policy100", run(f, mix...))
	b.Run("Policy100/accept", run(f, accept))
	b.Run("Policy100/drop", run(f, drop))
	b.Run("Policy100/reply", run(f, reply))
	b.Run("Policy100/reply-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				f.Inbound(reply)
			}
		})
	})
}
