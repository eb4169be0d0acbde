package usagestore

import (
	"strings"
	"testing"
)

// The columns insertUsage may write are those read back, in order.
func TestUsageColsMatchColumns(t *testing.T) {
	var names []string
	for _, c := range usageCols {
		names = append(names, c.name)
	}
	want := strings.Join(strings.Fields(strings.ReplaceAll(usageColumns, ",", " ")), ",")
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("usageCols\n got %s\nwant %s", got, want)
	}
}

// A breakdown keeps at most its bound of values: the rest sum into
// OtherGroups, and the totals over all groups stay exact.
func TestGroupSumsBounded(t *testing.T) {
	g := newGroupSums(3)
	one := usageSum{t: UsageTotals{Requests: 1, Errors: 1}, latency: 10}
	for _, k := range []string{"a", "b", "a", "c", "d", "e", "c", "d"} {
		g.add(k, one)
	}
	if len(g.m) != 4 {
		t.Fatalf("%d groups, want the bound (3) and %q: %v", len(g.m), OtherGroups, g.m)
	}
	want := map[string]int64{"a": 2, "b": 1, "c": 2, OtherGroups: 3} // d, e, d
	var total int64
	for k, s := range g.m {
		if s.t.Requests != want[k] {
			t.Errorf("group %q: %d requests, want %d", k, s.t.Requests, want[k])
		}
		total += s.t.Requests
	}
	if total != 8 {
		t.Errorf("%d requests over all groups, want 8", total)
	}
}
