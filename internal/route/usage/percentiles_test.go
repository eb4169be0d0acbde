package usage

import (
	"math/rand/v2"
	"testing"
)

func TestPercentilesNearestRank(t *testing.T) {
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	rand.Shuffle(len(hundred), func(i, j int) { hundred[i], hundred[j] = hundred[j], hundred[i] })
	tests := []struct {
		name string
		in   []int64
		want Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", []int64{42}, Percentiles{42, 42, 42, 1}},
		{"two", []int64{300, 100}, Percentiles{100, 300, 300, 2}},
		{"1..100 shuffled", hundred, Percentiles{50, 95, 99, 100}},
		{"ten with outlier", []int64{10, 10, 10, 10, 10, 10, 10, 10, 10, 5000}, Percentiles{10, 5000, 5000, 10}},
		{"twenty", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, Percentiles{10, 19, 20, 20}},
	}
	for _, tc := range tests {
		if got := percentiles(tc.in); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	if got := truncate("héllo", 2); got != "h" {
		t.Fatalf("%q", got)
	}
	if got := truncate("hello", 10); got != "hello" {
		t.Fatalf("%q", got)
	}
}
