package testenv

import (
	"testing"
	"time"
)

// Poll reports a condition that comes to hold, after calling it until it
// does, and one that never holds as not held once the bound has passed.
func TestPoll(t *testing.T) {
	calls := 0
	if _, ok := Poll(DefaultWait, func() bool { calls++; return calls == 3 }); !ok || calls != 3 {
		t.Fatalf("ok %v after %d calls, want true after 3", ok, calls)
	}
	took, ok := Poll(20*time.Millisecond, func() bool { return false })
	if ok || took < 20*time.Millisecond {
		t.Fatalf("a condition that never holds: ok %v after %v", ok, took)
	}
}
