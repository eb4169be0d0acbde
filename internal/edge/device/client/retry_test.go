package client

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		rnd := func() float64 { return r }
		prev := time.Duration(0)
		for a := range 40 {
			d := Backoff(a, 0, rnd)
			if d > BackoffMax || d < BackoffBase/2 || d < prev {
				t.Fatalf("attempt %d rand %v: %v (previous %v)", a, r, d, prev)
			}
			prev = d
		}
		if d := Backoff(0, 30*time.Second, rnd); d < 30*time.Second || d > 33*time.Second {
			t.Fatalf("Retry-After 30 s gave %v", d)
		}
		if d := Jittered(30*time.Second, rnd); d < 27*time.Second || d > 33*time.Second {
			t.Fatalf("heartbeat interval %v", d)
		}
	}
	if Backoff(3, 0, func() float64 { return 0 }) == Backoff(3, 0, func() float64 { return 0.99 }) {
		t.Fatal("no jitter")
	}
}
