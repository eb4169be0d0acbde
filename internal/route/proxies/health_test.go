package proxies

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Health sums are kept per proxy and hour for HealthRetention, and the
// sums in memory between flushes are capped.
func TestHealthRetentionAndCap(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqldb.Migrate(ctx, db, Product, Migrations()); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	s, err := New(Options{DB: db, MasterKey: make([]byte, 32), Clock: clk, HTTP: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	s.health.record("p1", true, 30*time.Millisecond)
	s.health.record("p1", true, 10*time.Millisecond)
	s.health.record("p1", false, 0)
	s.flush(ctx)
	clk.Advance(time.Hour)
	s.health.record("p1", true, 50*time.Millisecond)
	s.flush(ctx)
	now := clk.Now().Unix() / 3600
	sums, err := s.store.Health(ctx, now-1)
	if err != nil {
		t.Fatal(err)
	}
	if h := sums["p1"]; h.OK != 3 || h.Failed != 1 || h.LatencyMS != 90 {
		t.Fatalf("two hours: %+v", h)
	}
	if sums, _ = s.store.Health(ctx, now); sums["p1"].OK != 1 {
		t.Fatalf("last hour: %+v", sums["p1"])
	}
	clk.Advance(HealthRetention)
	s.health.record("p2", true, time.Millisecond)
	s.flush(ctx)
	var n int
	if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_proxy_health`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows after retention: %d %v, want 2 (the last hour of p1 and p2)", n, err)
	}

	for i := range MaxHealthEntries + 10 {
		s.health.record(string(rune('a'+i%26))+time.Duration(i).String(), true, 0)
	}
	if got := len(s.health.take()); got != MaxHealthEntries || s.health.dropped != 10 {
		t.Fatalf("kept %d sums, dropped %d", got, s.health.dropped)
	}
}
