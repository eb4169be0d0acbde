package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/events"
)

// 10,000 events to an endpoint that always fails: the process's RSS
// stays bounded (they wait in the database, not in memory), every one is
// attempted, and after a restart on the same database every one is
// retried when its retry is due. Run with OMNI_MEASURE=1; it reports the
// figures.
func TestMeasureUndeliverable(t *testing.T) {
	if os.Getenv("OMNI_MEASURE") != "1" {
		t.Skip("a measurement: set OMNI_MEASURE=1")
	}
	const n = 10_000
	var hits atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	rss := func() int64 {
		runtime.GC()
		kb, err := testenv.ProcStatusKB(os.Getpid(), "VmRSS")
		if err != nil {
			t.Fatal(err)
		}
		return kb
	}
	clk := clock.NewFake(t0)
	path := filepath.Join(t.TempDir(), "omni.db")
	db := openDB(t, path)
	nd := startNode(t, db, clk)
	if st, out := nd.do(t, "POST", "/api/webhooks", map[string]any{"url": down.URL}); st != http.StatusCreated {
		t.Fatalf("create: %d %v", st, out)
	}
	before := rss()
	start := time.Now()
	for i := range n {
		for len(nd.s.queue) > cap(nd.s.queue)-100 {
			time.Sleep(time.Millisecond) // the writer keeps up; nothing is dropped
		}
		nd.s.Publish(context.Background(), events.Event{Type: events.RequestFailed, Data: map[string]any{"i": i, "model": "p/m"}})
	}
	testenv.EventuallyWithin(t, "every first attempt", 5*time.Minute, func() bool { return hits.Load() >= n })
	first := time.Since(start)
	peak := rss()
	if d := nd.s.Dropped(); d != 0 {
		t.Fatalf("%d events dropped", d)
	}
	nd.stop()
	db.Close()

	db = openDB(t, path)
	var pending int
	if err := db.QueryRow(context.Background(), `SELECT COUNT(*) FROM gateway_webhook_deliveries WHERE status = 'pending' AND attempts = 1`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != n {
		t.Fatalf("%d deliveries pending after one attempt, want %d", pending, n)
	}
	startNode(t, db, clk) // the restarted gateway
	time.Sleep(50 * time.Millisecond)
	if h := hits.Load(); h != n {
		t.Fatalf("%d attempts before the retries were due", h)
	}
	clk.Advance(Schedule[0])
	start = time.Now()
	testenv.EventuallyWithin(t, "every retry after the restart", 5*time.Minute, func() bool { return hits.Load() >= 2*n })
	retry := time.Since(start)
	after := rss()
	fmt.Printf("webhooks measure: %d undeliverable events: RSS %d kB before, %d kB after every first attempt, %d kB after every retry (restarted); first attempts in %s, retries in %s\n",
		n, before, peak, after, first.Round(time.Millisecond), retry.Round(time.Millisecond))
	if peak-before > 64<<10 || after-before > 64<<10 {
		t.Fatalf("RSS grew by %d kB, then %d kB", peak-before, after-before)
	}
}
