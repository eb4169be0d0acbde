package policy

import (
	"errors"
	"net/netip"
	"testing"
)

func member(id, label, a4, a6 string, tags ...string) Member {
	m := Member{ID: id, Label: label, Tags: tags}
	if a4 != "" {
		m.Addr4 = netip.MustParseAddr(a4)
	}
	if a6 != "" {
		m.Addr6 = netip.MustParseAddr(a6)
	}
	return m
}

var (
	laptop   = member("dev_laptop1", "laptop", "100.66.0.2", "fd00::2")
	phone    = member("dev_AbC123", "phone", "100.66.0.3", "fd00::3")
	robot    = member("dev_robot1", "robot", "100.66.0.10", "fd00::10")
	nas      = member("dev_nas1", "nas", "100.66.0.11", "fd00::11", "storage")
	ci       = member("dev_ci1", "ci", "100.66.0.20", "fd00::20", "tag:ci", "tag:build")
	outsider = member("dev_out1", "outsider", "100.66.1.5", "fd00::1:5")
	testDir  = NewDirectory([]Member{laptop, phone, robot, nas, ci, outsider})
)

const testPolicy = `{
  "groups": {
    "group:ops": ["laptop", "dev_AbC123"],
    "group:all": ["group:ops", "tag:ci", "fd00::1:0/112"]
  },
  "rules": [
    {"action": "accept", "src": ["group:ops"], "dst": ["robot:22", "nas:80,443"], "proto": "tcp"},
    {"action": "accept", "src": ["laptop"], "dst": ["10.1.0.0/24:*"]},
    {"action": "accept", "src": ["*"], "dst": ["robot:53"], "proto": "udp"},
    {"action": "accept", "src": ["tag:ci"], "dst": ["*:*"], "proto": "icmp"},
    {"action": "accept", "src": ["group:all"], "dst": ["100.66.0.10:8000-8999", "[fd00::10]:9000"]},
    {"action": "accept", "src": ["100.66.0.0/24"], "dst": ["10.1.0.0/16:443"], "proto": "tcp"}
  ]
}`

func mustCompile(t testing.TB, doc string, self Member, routes ...string) *Filter {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var rs []netip.Prefix
	for _, r := range routes {
		rs = append(rs, netip.MustParsePrefix(r))
	}
	f, err := p.Compile(testDir, self, rs)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDirectory(t *testing.T) {
	for _, name := range []string{"dev_AbC123", "phone"} {
		if m, ok := testDir.Lookup(name); !ok || m.ID != phone.ID {
			t.Errorf("Lookup(%q) = %v, %v", name, m, ok)
		}
	}
	if _, ok := testDir.Lookup("100.66.0.3"); ok {
		t.Error("Lookup by address")
	}
	if got := testDir.Tagged("tag:storage"); len(got) != 1 || got[0].ID != nas.ID {
		t.Errorf("Tagged(tag:storage) = %v", got)
	}
	if got := testDir.Tagged("tag:ci"); len(got) != 1 || got[0].ID != ci.ID {
		t.Errorf("Tagged(tag:ci) = %v", got)
	}
}

func TestValidate(t *testing.T) {
	p, err := Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(testDir); err != nil {
		t.Errorf("Validate: %v", err)
	}
	var nilPolicy *Policy
	if err := nilPolicy.Validate(testDir); err != nil {
		t.Errorf("nil policy: %v", err)
	}
	for _, tc := range []struct{ doc, want string }{
		{"{\"groups\": {\"group:a\": [\"laptop\",\n  \"ghost\"]}}", `groups["group:a"][1] (line 2, column 3): unknown member "ghost"`},
		{"{\"rules\": [\n {\"action\": \"accept\", \"src\": [\"tag:ci\", \"tag:nobody\"], \"dst\": [\"robot:*\"]}]}",
			`rules[0].src[1] (line 2, column 41): no member has tag "tag:nobody"`},
		{"{\"rules\": [\n {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"robot:*\", \"dev_gone:22\"]}]}",
			`rules[0].dst[1] (line 2, column 56): unknown member "dev_gone"`},
		{"{\"rules\": [\n {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:x:22\"]}],\n \"groups\": {\"group:g\": [\"nobody\"]}}",
			`groups["group:g"][0] (line 3, column 25): unknown member "nobody"`}, // groups first
		{"{\"rules\": [\n {\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"tag:x:22\"]}]}",
			`rules[0].dst[0] (line 2, column 45): no member has tag "tag:x"`},
	} {
		p, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.doc, err)
		}
		err = p.Validate(testDir)
		var pe *Error
		if !errors.As(err, &pe) || err.Error() != tc.want {
			t.Errorf("Validate(%q)\n got %v\nwant %s", tc.doc, err, tc.want)
		}
	}
}

func TestCompileMatch(t *testing.T) {
	f := mustCompile(t, testPolicy, robot, "10.1.0.0/24")
	tcp, udp := uint8(ProtoTCP), uint8(ProtoUDP)
	for _, tc := range []struct {
		name     string
		src, dst string
		proto    uint8
		port     uint16
		want     bool
	}{
		{"group member to ssh", "100.66.0.2", "100.66.0.10", tcp, 22, true},
		{"group member by id", "100.66.0.3", "100.66.0.10", tcp, 22, true},
		{"group member over IPv6", "fd00::3", "fd00::10", tcp, 22, true},
		{"port not granted", "100.66.0.2", "100.66.0.10", tcp, 80, false},
		{"udp to a tcp rule", "100.66.0.2", "100.66.0.10", udp, 22, false},
		{"icmp not granted", "100.66.0.2", "100.66.0.10", ProtoICMP, 0, false},
		{"not in the group", "100.66.0.11", "100.66.0.10", tcp, 22, false},
		{"another member's destination", "100.66.0.2", "100.66.0.11", tcp, 80, false},
		{"subnet route, any protocol", "100.66.0.2", "10.1.0.7", tcp, 8080, true},
		{"subnet route, icmp", "100.66.0.2", "10.1.0.7", ProtoICMP, 0, true},
		{"subnet route from elsewhere", "100.66.0.3", "10.1.0.7", tcp, 8080, false},
		{"prefix rule clipped to the route", "100.66.0.3", "10.1.0.7", tcp, 443, true},
		{"prefix rule, outside the route", "100.66.0.3", "10.1.1.7", tcp, 443, false},
		{"prefix source, outside", "100.66.1.5", "10.1.0.7", tcp, 443, false},
		{"route not carried", "100.66.0.2", "10.2.0.1", tcp, 80, false},
		{"anyone to dns", "100.66.1.5", "100.66.0.10", udp, 53, true},
		{"anyone to dns over IPv6", "fd00::1:5", "fd00::10", udp, 53, true},
		{"dns over tcp", "100.66.1.5", "100.66.0.10", tcp, 53, false},
		{"tag to icmp", "100.66.0.20", "100.66.0.10", ProtoICMP, 0, true},
		{"tag to icmpv6", "fd00::20", "fd00::10", ProtoICMPv6, 0, true},
		{"tag to icmp via the route", "100.66.0.20", "10.1.0.9", ProtoICMP, 0, true},
		{"tag, tcp", "100.66.0.20", "100.66.0.10", tcp, 22, false},
		{"nested group, range", "100.66.0.2", "100.66.0.10", udp, 8500, true},
		{"nested group via tag, range end", "100.66.0.20", "100.66.0.10", tcp, 8999, true},
		{"range end+1", "100.66.0.20", "100.66.0.10", tcp, 9000, false},
		{"icmp to a port rule", "100.66.0.20", "100.66.0.10", 47, 0, false},
		{"group prefix over IPv6", "fd00::1:5", "fd00::10", tcp, 9000, true},
		{"group prefix, IPv4 side has none", "100.66.1.5", "100.66.0.10", tcp, 8000, false},
		{"mixed families", "100.66.0.2", "fd00::10", tcp, 22, false},
	} {
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		if got := f.Allow(src, dst, tc.proto, tc.port); got != tc.want {
			t.Errorf("%s: Allow(%s → %s, %d, %d) = %v; want %v", tc.name, src, dst, tc.proto, tc.port, got, tc.want)
		}
	}
}

func TestCompileOtherDevice(t *testing.T) {
	// nas receives only its own destinations.
	f := mustCompile(t, testPolicy, nas)
	a := netip.MustParseAddr
	for _, tc := range []struct {
		src, dst string
		port     uint16
		want     bool
	}{
		{"100.66.0.2", "100.66.0.11", 443, true},
		{"100.66.0.2", "100.66.0.11", 22, false},
		{"100.66.0.2", "10.1.0.7", 80, false}, // laptop's route rule is robot's
	} {
		if got := f.Allow(a(tc.src), a(tc.dst), ProtoTCP, tc.port); got != tc.want {
			t.Errorf("%s → %s:%d = %v; want %v", tc.src, tc.dst, tc.port, got, tc.want)
		}
	}
}

func TestCompileEdges(t *testing.T) {
	a := netip.MustParseAddr
	// Absent policies allow everything.
	for _, doc := range []string{"", "{}", `{"groups": {}}`} {
		if f := mustCompile(t, doc, robot); !f.Allow(a("1.2.3.4"), a("5.6.7.8"), ProtoTCP, 1) {
			t.Errorf("%q does not allow all", doc)
		}
	}
	var nilPolicy *Policy
	if f, err := nilPolicy.Compile(testDir, robot, nil); err != nil || !f.Allow(a("1.2.3.4"), a("5.6.7.8"), ProtoTCP, 1) {
		t.Errorf("nil policy: %v", err)
	}
	// rules: [] denies everything.
	if f := mustCompile(t, `{"rules": []}`, robot); f.Allow(a("100.66.0.2"), a("100.66.0.10"), ProtoTCP, 22) {
		t.Error("rules: [] allows")
	}
	// A member the directory no longer knows matches nothing; the rest stays.
	doc := `{"rules": [{"action": "accept", "src": ["gone", "laptop"], "dst": ["robot:*", "gone:*"]}]}`
	f := mustCompile(t, doc, robot)
	if !f.Allow(a("100.66.0.2"), a("100.66.0.10"), ProtoUDP, 1) || f.Allow(a("100.66.0.3"), a("100.66.0.10"), ProtoUDP, 1) {
		t.Error("unknown names")
	}
	// An exit node's routes make "*" every destination.
	f = mustCompile(t, `{"rules": [{"action": "accept", "src": ["laptop"], "dst": ["*:443"]}]}`, robot, "0.0.0.0/0", "::/0")
	if !f.Allow(a("100.66.0.2"), a("93.184.216.34"), ProtoTCP, 443) || !f.Allow(a("fd00::2"), a("2001:db8::1"), ProtoTCP, 443) {
		t.Error("exit routes")
	}
	// IPv4-mapped addresses count as IPv4.
	if !f.Allow(a("::ffff:100.66.0.2"), a("::ffff:93.184.216.34"), ProtoTCP, 443) {
		t.Error("mapped addresses")
	}
	// A device with an IPv4 address only has no IPv6 table.
	f = mustCompile(t, `{"rules": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`, member("dev_x", "x", "100.66.0.99", ""))
	if !f.Allow(a("100.66.0.2"), a("100.66.0.99"), ProtoTCP, 1) || f.Allow(a("fd00::2"), a("fd00::99"), ProtoTCP, 1) {
		t.Error("IPv4-only device")
	}
	p, _ := Parse([]byte(`{"rules": []}`))
	if _, err := p.Compile(testDir, Member{ID: "dev_x"}, nil); err == nil {
		t.Error("a device without address compiled")
	}
	if _, err := p.Compile(testDir, robot, []netip.Prefix{{}}); err == nil {
		t.Error("an invalid route compiled")
	}
}

// TestCompileNesting checks the source table with nested and adjacent
// prefixes: every node holding the source is consulted.
func TestCompileNesting(t *testing.T) {
	doc := `{"rules": [
	  {"action": "accept", "src": ["10.0.0.0/8"], "dst": ["robot:1"]},
	  {"action": "accept", "src": ["10.1.0.0/16"], "dst": ["robot:2"]},
	  {"action": "accept", "src": ["10.1.2.0/24"], "dst": ["robot:3"]},
	  {"action": "accept", "src": ["10.1.2.3"], "dst": ["robot:4"]},
	  {"action": "accept", "src": ["10.1.3.0/24"], "dst": ["robot:5"]},
	  {"action": "accept", "src": ["10.2.0.0/16", "11.0.0.0/8"], "dst": ["robot:6"]},
	  {"action": "accept", "src": ["*"], "dst": ["robot:7"]}
	]}`
	f := mustCompile(t, doc, robot)
	for _, tc := range []struct {
		src   string
		ports []uint16 // allowed among 1..8
	}{
		{"10.1.2.3", []uint16{1, 2, 3, 4, 7}},
		{"10.1.2.4", []uint16{1, 2, 3, 7}},
		{"10.1.3.9", []uint16{1, 2, 5, 7}},
		{"10.1.4.1", []uint16{1, 2, 7}},
		{"10.2.0.1", []uint16{1, 6, 7}},
		{"10.3.0.1", []uint16{1, 7}},
		{"11.255.255.255", []uint16{6, 7}},
		{"9.255.255.255", []uint16{7}},
		{"0.0.0.0", []uint16{7}},
		{"255.255.255.255", []uint16{7}},
	} {
		for port := uint16(1); port <= 8; port++ {
			want := false
			for _, p := range tc.ports {
				want = want || p == port
			}
			if got := f.Allow(netip.MustParseAddr(tc.src), robot.Addr4, ProtoTCP, port); got != want {
				t.Errorf("%s → :%d = %v; want %v", tc.src, port, got, want)
			}
		}
	}
}

func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		p           string
		first, last u128
	}{
		{"0.0.0.0/0", u128{0, 0}, u128{0, 1<<32 - 1}},
		{"10.1.0.0/16", u128{0, 0x0a010000}, u128{0, 0x0a01ffff}},
		{"100.66.0.10/32", u128{0, 0x6442000a}, u128{0, 0x6442000a}},
		{"::/0", u128{0, 0}, u128{^uint64(0), ^uint64(0)}},
		{"fd00::/8", u128{0xfd00 << 48, 0}, u128{0xfdff_ffff_ffff_ffff, ^uint64(0)}},
		{"fd00::/64", u128{0xfd00 << 48, 0}, u128{0xfd00 << 48, ^uint64(0)}},
		{"fd00::100/120", u128{0xfd00 << 48, 0x100}, u128{0xfd00 << 48, 0x1ff}},
		{"fd00::1/128", u128{0xfd00 << 48, 1}, u128{0xfd00 << 48, 1}},
	} {
		first, last := span(netip.MustParsePrefix(tc.p))
		if first != tc.first || last != tc.last {
			t.Errorf("span(%s) = %x, %x; want %x, %x", tc.p, first, last, tc.first, tc.last)
		}
	}
}
