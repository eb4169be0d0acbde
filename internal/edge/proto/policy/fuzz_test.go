package policy

import (
	"errors"
	"testing"
)

// FuzzInbound feeds arbitrary bytes to both directions of a compiled
// filter: nothing panics, and what Outbound records never makes a packet
// that is not a well-formed reply pass.
func FuzzInbound(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p)
	}
	filter := mustCompile(f, testPolicy, robot, "10.1.0.0/24")
	deny := mustCompile(f, `{"rules": []}`, robot)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := filter.Inbound(b)
		filter.Outbound(b)
		if in && !filter.Inbound(b) {
			t.Fatalf("%x passed, then not", b)
		}
		if deny.Inbound(b) {
			var p packet
			if !parse(b, &p, false) || !p.nonFirst && p.class != pICMP {
				t.Fatalf("%x passes a deny-all filter with no flows", b)
			}
		}
	})
}

// FuzzParse checks that any document either parses and compiles or fails
// with an *Error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"rules": []}`, testPolicy, `{"rules": [{"action": "accept", "src": ["*"], "dst": ["[fd00::1]:22,80-90"]}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || p != nil {
				t.Fatalf("Parse(%q) = %v, %v", b, p, err)
			}
			return
		}
		_ = p.Validate(testDir)
		if _, err := p.Compile(testDir, robot, nil); err != nil {
			t.Fatalf("Compile(%q): %v", b, err)
		}
	})
}
