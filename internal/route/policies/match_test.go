package policies_test

import (
	"testing"

	"github.com/omniedge/omni/internal/route/policies"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		glob, s string
		want    bool
	}{
		{"*-preview", "gpt-x-preview", true},
		{"*-preview", "nebius/org/x-preview", true},
		{"*-preview", "gpt-x-preview-2", false},
		{"gpt-?o", "gpt-4o", true},
		{"gpt-?o", "gpt-40o", false},
		{"a/*", "a/m", true},
		{"a/*", "b/a/m", false},
		{"*", "", true},
		{"m", "m", true},
		{"m", "mm", false},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b*", "xxbxxaxx", false},
		{"?", "é", true},
	} {
		if got := policies.Match(c.glob, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.glob, c.s, got, c.want)
		}
	}
}
