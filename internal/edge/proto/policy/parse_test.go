package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseGood(t *testing.T) {
	for _, tc := range []struct {
		doc      string
		allowAll bool
		rules    int
	}{
		{"", true, 0},
		{"  \n ", true, 0},
		{"null", true, 0},
		{"{}", true, 0},
		{`{"rules": null}`, true, 0},
		{`{"groups": {"group:a": ["x"]}}`, true, 0},
		{`{"rules": []}`, false, 0},
		{`{"version": 1, "rules": []}`, false, 0},
		{`{
		  "groups": {"group:ops": ["laptop", "dev_AbC-12_3", "tag:admin", "100.66.0.9", "fd00::/64", "group:more"],
		             "group:more": ["nas"]},
		  "rules": [
		    {"action": "accept", "src": ["group:ops", "100.66.0.0/24"], "dst": ["robot:22", "nas:80,443", "10.1.0.0/24:*"], "proto": "tcp"},
		    {"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp"},
		    {"action": "accept", "src": ["tag:ci"], "dst": ["[fd00::1]:22", "fd00::/64:1000-2000,3000", "group:ops:0-65535", "tag:x:*"], "proto": "*"},
		    {"action": "accept", "src": ["::ffff:100.66.0.1"], "dst": ["100.66.0.2:53"], "proto": "udp"}
		  ]
		}`, false, 4},
	} {
		p, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.doc, err)
			continue
		}
		if p.AllowsAll() != tc.allowAll || len(p.rules) != tc.rules {
			t.Errorf("Parse(%q): allow-all %v with %d rules; want %v, %d", tc.doc, p.AllowsAll(), len(p.rules), tc.allowAll, tc.rules)
		}
	}
	var nilPolicy *Policy
	if !nilPolicy.AllowsAll() {
		t.Error("a nil policy does not allow all")
	}
}

func TestParsePorts(t *testing.T) {
	p, err := Parse([]byte(`{"rules": [{"action": "accept", "src": ["*"], "dst": ["a:22,80-90,65535", "b:*", "[fd00::1]:7"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := p.rules[0].dst
	if got := fmt.Sprint(d[0].ports, d[1].ports, d[2].ports, d[2].pfx, p.rules[0].protos == pAll); got != "[{22 22} {80 90} {65535 65535}] [] [{7 7}] fd00::1/128 true" {
		t.Errorf("ports: %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	rule := func(fields string) string {
		return "{\n  \"rules\": [\n    {\"action\": \"accept\", " + fields + "}\n  ]\n}"
	}
	for _, tc := range []struct{ doc, want string }{
		{`[]`, `policy (line 1, column 1): want an object`},
		{`{"rules": [], "acls": []}`, `acls (line 1, column 15): unknown field "acls"`},
		{`{"rules": [], "rules": []}`, `rules (line 1, column 15): duplicate field "rules"`},
		{`{"version": 2}`, `version (line 1, column 13): unsupported version 2; this reads version 1`},
		{`{"version": "1"}`, `version (line 1, column 13): unsupported version 1; this reads version 1`},
		{`{"rules": {}}`, `rules (line 1, column 11): want a list`},
		{`{"rules": [1]}`, `rules[0] (line 1, column 12): want an object`},
		{`{"rules": []} {}`, `policy (line 1, column 15): unexpected data after the document`},
		{`{"rules": [] x`, `policy (line 1, column 14): invalid character 'x' after object key:value pair`},
		{`{"rules": [`, `rules (line 1, column 12): unexpected end of the document`},
		{"{\n\"rules\": [{\"action\": \"accept\",\n \"src\": [\"*\"], \"dst\": [\"a:*\"]},\n {\"action\": \"drop\"}]}",
			`rules[1].action (line 4, column 13): unknown action "drop"; the only action is "accept"`},
		{rule(`"src": ["*"], "dst": ["robot:ssh"]`), `rules[0].dst[0] (line 3, column 48): unknown port "ssh"`},
		{rule(`"src": ["group:ops", "100.66.0.0/24"], "dst": ["robot:22", "nas:80,443", "10.1.0.0/24:*", "*:icmp"], "proto": "tcp"`),
			`rules[0].dst[3] (line 3, column 116): unknown port "icmp"`},
		{rule(`"src": ["*"], "dst": ["a:80-70"]`), `rules[0].dst[0] (line 3, column 48): port range "80-70" is reversed`},
		{rule(`"src": ["*"], "dst": ["a:65536"]`), `rules[0].dst[0] (line 3, column 48): unknown port "65536"`},
		{rule(`"src": ["*"], "dst": ["a:"]`), `rules[0].dst[0] (line 3, column 48): unknown port ""`},
		{rule(`"src": ["*"], "dst": ["a:1,,2"]`), `rules[0].dst[0] (line 3, column 48): unknown port ""`},
		{rule(`"src": ["*"], "dst": ["robot"]`), `rules[0].dst[0] (line 3, column 48): destination "robot" has no ports; write robot:* or robot:<ports>`},
		{rule(`"src": ["*"], "dst": ["group:ops"]`), `rules[0].dst[0] (line 3, column 48): destination "group:ops" has no ports; write group:ops:* or group:ops:<ports>`},
		{rule(`"src": ["*"], "dst": ["fd00::1"]`), `rules[0].dst[0] (line 3, column 48): destination "fd00::1" has no ports; write [fd00::1]:* or [fd00::1]:<ports>`},
		{rule(`"src": ["*"], "dst": ["10.0.0.0/8"]`), `rules[0].dst[0] (line 3, column 48): destination "10.0.0.0/8" has no ports; write 10.0.0.0/8:* or 10.0.0.0/8:<ports>`},
		{rule(`"src": ["*"], "dst": ["a:22"], "proto": "icmp"`), `rules[0].dst[0] (line 3, column 48): icmp has no ports; write a:*`},
		{rule(`"src": ["*"], "dst": ["a:*"], "proto": "sctp"`), `rules[0].proto (line 3, column 65): unknown proto "sctp"; want tcp, udp, icmp or *`},
		{rule(`"src": ["robot:22"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): invalid selector "robot:22": want *, a member, group:<name>, tag:<name>, an address or a prefix`},
		{rule(`"src": ["robot.home"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): invalid selector "robot.home": want *, a member, group:<name>, tag:<name>, an address or a prefix`},
		{rule(`"src": ["10.1.0.5/24"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): prefix 10.1.0.5/24 has host bits set; write 10.1.0.0/24`},
		{rule(`"src": ["10.1.0.0/33"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): invalid prefix "10.1.0.0/33"`},
		{rule(`"src": ["fe80::1%eth0"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): invalid selector "fe80::1%eth0": want *, a member, group:<name>, tag:<name>, an address or a prefix`},
		{rule(`"src": ["tag:"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): invalid name "tag:": 1 to 64 of A-Z a-z 0-9 _ - after the colon`},
		{rule(`"src": ["group:nope"], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): unknown group "group:nope"`},
		{rule(`"src": [], "dst": ["a:*"]`), `rules[0] (line 3, column 5): missing or empty "src"`},
		{rule(`"src": ["*"]`), `rules[0] (line 3, column 5): missing or empty "dst"`},
		{rule(`"src": "*", "dst": ["a:*"]`), `rules[0].src (line 3, column 33): want a list`},
		{rule(`"src": [1], "dst": ["a:*"]`), `rules[0].src[0] (line 3, column 34): want a string`},
		{rule(`"src": ["*"], "dst": ["a:*"], "ports": "22"`), `rules[0].ports (line 3, column 56): unknown field "ports"`},
		{"{\"rules\": [{\"src\": [\"*\"], \"dst\": [\"a:*\"]}]}", `rules[0] (line 1, column 12): missing "action"`},
		{`{"groups": {"ops": []}}`, `groups["ops"] (line 1, column 13): a group is named group:<name>, the name 1 to 64 of A-Z a-z 0-9 _ -`},
		{`{"groups": {"group:a": ["*"]}}`, `groups["group:a"][0] (line 1, column 25): a group cannot hold *`},
		{`{"groups": {"group:a": "x"}}`, `groups["group:a"] (line 1, column 24): want a list`},
		{"{\"groups\": {\n  \"group:a\": [\"x\", \"group:b\"],\n  \"group:b\": [\"group:c\"], \"group:c\": []\n}}",
			`groups["group:a"][1] (line 2, column 20): group:b holds groups itself; groups nest one level deep`},
		{`{"groups": {"group:a": ["group:a"]}}`, `groups["group:a"][0] (line 1, column 25): group:a holds groups itself; groups nest one level deep`},
		{`{"groups": {"group:a": ["group:b"]}}`, `groups["group:a"][0] (line 1, column 25): unknown group "group:b"`},
		{`{"groups": []}`, `groups (line 1, column 12): want an object`},
		{`{"rules": [{"action": 1}]}`, `rules[0].action (line 1, column 23): unknown action 1; the only action is "accept"`},
		{`{"rules": [{"action": "accept", "src": ["*"], "dst": ["a:*"], "proto": 6}]}`, `rules[0].proto (line 1, column 72): unknown proto 6; want tcp, udp, icmp or *`},
		{`{"rules": [{"src": [[[]]]}]}`, `rules[0].src[0] (line 1, column 21): nested too deep`},
		{`{"rules": [[[[[[[[[[[[[[[[`, `rules[0][0][0] (line 1, column 14): nested too deep`},
		{`{"a b": 1}`, `["a b"] (line 1, column 2): unknown field "a b"`},
		{"{\"rules\": [{\"action\": \"accept\", \"src\": [\"é\", \"ünknown\"], \"dst\": [\"a:*\"]}]}",
			`rules[0].src[0] (line 1, column 41): invalid selector "é": want *, a member, group:<name>, tag:<name>, an address or a prefix`},
	} {
		_, err := Parse([]byte(tc.doc))
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v; want *Error %s", tc.doc, err, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Parse(%q)\n got %s\nwant %s", tc.doc, err, tc.want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	big := `{"rules": [` + strings.Repeat(" ", MaxSize) + `]}`
	if _, err := Parse([]byte(big)); err == nil || !strings.Contains(err.Error(), "more than 262144") {
		t.Errorf("oversized document: %v", err)
	}
	r := `{"action": "accept", "src": ["*"], "dst": ["a:*"]}`
	rules := strings.Repeat(r+",", MaxRules) + r
	if _, err := Parse([]byte(`{"rules": [` + rules + `]}`)); err == nil || err.Error() != fmt.Sprintf("rules[1000] (line 1, column %d): more than 1000 rules", 12+(len(r)+1)*1000) {
		t.Errorf("too many rules: %v", err)
	}
	var g strings.Builder
	for i := range MaxGroups + 1 {
		fmt.Fprintf(&g, `"group:g%d": [],`, i)
	}
	if _, err := Parse([]byte(`{"groups": {` + strings.TrimSuffix(g.String(), ",") + `}}`)); err == nil || !strings.HasSuffix(err.Error(), "more than 1000 groups") ||
		!strings.HasPrefix(err.Error(), `groups["group:g1000"]`) {
		t.Errorf("too many groups: %v", err)
	}
	sels := strings.TrimSuffix(strings.Repeat(`"a",`, MaxSelectors), ",")
	if _, err := Parse([]byte(`{"groups": {"group:a": [` + sels + `]}, "rules": [` + r + `]}`)); err == nil || !strings.HasPrefix(err.Error(), "rules[0].src[0] ") ||
		!strings.HasSuffix(err.Error(), "more than 10000 selectors") {
		t.Errorf("too many selectors: %v", err)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Path: "rules[3].dst[1]", Line: 9, Column: 12, Msg: `unknown port "ssh"`}, `rules[3].dst[1] (line 9, column 12): unknown port "ssh"`},
		{Error{Msg: "too big"}, "policy: too big"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v: %s; want %s", tc.e, got, tc.want)
		}
	}
}
