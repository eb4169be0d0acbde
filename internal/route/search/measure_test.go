package search_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSearchMeasure reports what a search costs through the gateway
// (HTTP in and out, the gates, usage records) against an instant
// upstream: a miss (an upstream call), a hit (the response cache), and
// the upstream calls of concurrent identical searches. Figures only;
// nothing timed is asserted.
func TestSearchMeasure(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 200
	e := newEnv(t)
	u := newUpstream(t, "tavily")
	provider(e, "tv", "tavily", u)
	run := func(name string, body func(i int) map[string]any) {
		lat := make([]time.Duration, n)
		start := time.Now()
		for i := range n {
			s := time.Now()
			e.Want(http.StatusOK, "POST", "/v1/search", body(i))
			lat[i] = time.Since(s)
		}
		total := time.Since(start)
		slices.Sort(lat)
		t.Logf("%s: %d searches, %.0f/s, p50 %v, p99 %v", name, n, float64(n)/total.Seconds(),
			lat[n/2].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond))
	}
	before := u.n()
	run("miss", func(i int) map[string]any {
		return map[string]any{"query": fmt.Sprintf("miss %d", i), "provider": "tv"}
	})
	misses := u.n() - before
	before = u.n()
	run("hit", func(int) map[string]any { return map[string]any{"query": "miss 0", "provider": "tv"} })
	hits := u.n() - before
	t.Logf("upstream calls: %d for %d misses, %d for %d hits", misses, n, hits, n)
	if misses != n || hits != 0 {
		t.Fatalf("upstream calls %d and %d", misses, hits)
	}

	// Bursts of identical searches at once, released together.
	const burst, rounds = 32, 10
	before = u.n()
	for r := range rounds {
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				e.Do("POST", "/v1/search", map[string]any{"query": fmt.Sprintf("burst %d", r), "provider": "tv"})
			}()
		}
		close(gate)
		wg.Wait()
	}
	t.Logf("bursts: %d rounds of %d identical searches made %d upstream calls", rounds, burst, u.n()-before)
}
