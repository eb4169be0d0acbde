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
