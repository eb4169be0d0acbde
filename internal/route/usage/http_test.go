package usage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

var now = time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC)

// seed stores a known set of records around now.
func seed(t *testing.T, st *store.Store) {
	t.Helper()
	m := time.Minute
	recs := []store.UsageRecord{
		{At: now.Add(-3 * 24 * time.Hour), Provider: "oa", TargetModel: "gpt-4o", Model: "oa/gpt-4o", Connection: "oa#1", KeyID: "k1", InputTokens: 1000, CostUSD: 2, LatencyMS: 900, Status: 200},
		{At: now.Add(-2 * time.Hour), Provider: "oa", TargetModel: "gpt-4o", Model: "oa/gpt-4o", Connection: "oa#1", KeyID: "k1", InputTokens: 100, CostUSD: 1, LatencyMS: 700, Status: 200},
		{At: now.Add(-20 * m), Provider: "oa", TargetModel: "gpt-4o", Model: "smart", Connection: "oa#2", KeyID: "k2", InputTokens: 20, OutputTokens: 5, CostUSD: 0.25, LatencyMS: 300, Status: 200, Session: "s3",
			Attempts: 2, AttemptsJSON: `[{"provider":"oa","connection":"oa#1","status":500},{"provider":"oa","connection":"oa#2","status":200}]`},
		{At: now.Add(-10 * m), Provider: "oa", TargetModel: "gpt-4o", Model: "oa/gpt-4o", Connection: "oa#1", KeyID: "k1", InputTokens: 10, OutputTokens: 5, CostUSD: 0.5, LatencyMS: 100, Status: 200, Session: "s1", Attempts: 1},
		{At: now.Add(-5 * m), Provider: "cl", TargetModel: "sonnet", Model: "cl/sonnet", Connection: "cl#1", KeyID: "k1", LatencyMS: 50, Status: 502, ErrorType: "api_error", Session: "s2", Attempts: 1},
		{At: now.Add(-1 * m), Model: "cl/sonnet", KeyID: "k1", Status: 429, ErrorType: "rate_limit_error", Session: "s2"},
	}
	if err := st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
}

type client struct {
	t   *testing.T
	srv *httptest.Server
}

func (a client) do(method, path, body string) (int, map[string]any) {
	a.t.Helper()
	req, _ := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (a client) get(path string) map[string]any {
	a.t.Helper()
	code, out := a.do("GET", path, "")
	if code != 200 {
		a.t.Fatalf("GET %s: %d %v", path, code, out)
	}
	return out
}

func TestEndpointsSQLite(t *testing.T) { runEndpoints(t, sqliteStore(t)) }

func TestEndpointsPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	runEndpoints(t, openStore(t, dsn))
}

func runEndpoints(t *testing.T, st *store.Store) {
	seed(t, st)
	rec := usage.New(usage.Options{Store: st, Clock: clock.NewFake(now), CatalogCount: 10, Log: logging.Discard(),
		Providers: providers})
	mux := http.NewServeMux()
	rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	// Another engineer's literal route next to {connectionId}.
	mux.Handle("GET /api/usage/budget", httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		httpx.WriteJSON(w, 200, map[string]any{"budget": true})
		return nil
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a := client{t, srv}

	t.Run("history", func(t *testing.T) {
		a.t = t
		tests := []struct {
			query    string
			buckets  int
			requests float64
			errors   float64
			cost     float64
			nonEmpty map[string]float64 // bucket time → requests
		}{
			{"?period=24h&groupBy=hour", 25, 5, 2, 1.75, map[string]float64{"2026-11-20T10:00:00Z": 1, "2026-11-20T12:00:00Z": 4}},
			{"?period=24h", 25, 5, 2, 1.75, nil},
			{"?period=7d", 8, 6, 2, 3.75, map[string]float64{"2026-11-17T00:00:00Z": 1, "2026-11-20T00:00:00Z": 5}},
			{"?period=7d&groupBy=day&provider=cl", 8, 1, 1, 0, map[string]float64{"2026-11-20T00:00:00Z": 1}},
			{"?period=24h&apiKeyId=k2", 25, 1, 0, 0.25, nil},
			{"?period=24h&model=cl/sonnet", 25, 2, 2, 0, nil},
			{"?period=30d&model=gpt-4o", 31, 4, 0, 3.75, nil},
		}
		for _, tc := range tests {
			out := a.get("/api/usage/history" + tc.query)
			buckets := out["buckets"].([]any)
			totals := out["totals"].(map[string]any)
			if len(buckets) != tc.buckets || totals["requests"] != tc.requests || totals["errors"] != tc.errors || !near(totals["costUsd"].(float64), tc.cost) {
				t.Fatalf("%s: %d buckets, totals %v", tc.query, len(buckets), totals)
			}
			var sum float64
			for _, b := range buckets {
				b := b.(map[string]any)
				sum += b["requests"].(float64)
				if want, ok := tc.nonEmpty[b["time"].(string)]; ok && b["requests"] != want {
					t.Fatalf("%s: bucket %v", tc.query, b)
				}
			}
			if sum != tc.requests {
				t.Fatalf("%s: buckets sum to %v requests, totals say %v", tc.query, sum, tc.requests)
			}
		}
		for _, q := range []string{"?period=1y", "?groupBy=week", "?period=90d&groupBy=hour"} {
			if code, _ := a.do("GET", "/api/usage/history"+q, ""); code != 400 {
				t.Fatalf("%s: %d, want 400", q, code)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		a.t = t
		first := a.get("/api/usage/logs?limit=4")
		logs := first["logs"].([]any)
		if len(logs) != 4 || logs[0].(map[string]any)["status"] != 429.0 || first["nextCursor"] == nil {
			t.Fatalf("first page %v", first)
		}
		cursor := int64(first["nextCursor"].(float64))
		next := a.get("/api/usage/logs?limit=4&cursor=" + itoa(cursor))
		if n := len(next["logs"].([]any)); n != 2 || next["nextCursor"] != nil {
			t.Fatalf("second page %v", next)
		}
		off := a.get("/api/usage/logs?limit=1&offset=5")["logs"].([]any)
		if len(off) != 1 || off[0].(map[string]any)["inputTokens"] != 1000.0 {
			t.Fatalf("offset page %v", off)
		}
		if n := len(a.get("/api/usage/logs?provider=cl")["logs"].([]any)); n != 1 {
			t.Fatalf("provider filter: %d", n)
		}
		if n := len(a.get("/api/usage/logs?sessionId=s2")["logs"].([]any)); n != 2 {
			t.Fatalf("session filter: %d", n)
		}
		if n := len(a.get("/api/usage/logs?period=1h")["logs"].([]any)); n != 4 {
			t.Fatalf("period filter: %d", n)
		}
		for _, q := range []string{"?limit=0", "?limit=x", "?limit=5000", "?offset=-1", "?cursor=abc", "?period=2w"} {
			if code, _ := a.do("GET", "/api/usage/logs"+q, ""); code != 400 {
				t.Fatalf("%s: %d, want 400", q, code)
			}
		}
		req := a.get("/api/usage/request-logs?apiKeyId=k2")["logs"].([]any)
		if len(req) != 1 {
			t.Fatalf("request logs %v", req)
		}
		r := req[0].(map[string]any)
		list := r["attemptList"].([]any)
		if r["attempts"] != 2.0 || len(list) != 2 || list[0].(map[string]any)["status"] != 500.0 || r["connectionId"] != "oa#2" {
			t.Fatalf("request log %v", r)
		}
	})

	t.Run("connection", func(t *testing.T) {
		a.t = t
		out := a.get("/api/usage/oa%231")
		if out["connectionId"] != "oa#1" || out["requests"] != 3.0 || out["inputTokens"] != 1110.0 || !near(out["costUsd"].(float64), 3.5) || out["lastUsed"] == nil {
			t.Fatalf("oa#1 %v", out)
		}
		out = a.get("/api/usage/oa%231?period=24h")
		if out["requests"] != 2.0 {
			t.Fatalf("oa#1 24h %v", out)
		}
		if out := a.get("/api/usage/nobody"); out["requests"] != 0.0 || out["lastUsed"] != nil {
			t.Fatalf("unknown connection %v", out)
		}
		if out := a.get("/api/usage/budget"); out["budget"] != true {
			t.Fatalf("budget route shadowed: %v", out)
		}
	})

	t.Run("telemetry", func(t *testing.T) {
		a.t = t
		out := a.get("/api/telemetry/summary")
		want := map[string]any{"providers": map[string]any{"oa": map[string]any{"p50": 100.0, "p95": 300.0, "p99": 300.0, "count": 2.0}}}
		if !jsonEqual(out, want) {
			t.Fatalf("telemetry %v", out)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		a.t = t
		out := a.get("/api/sessions")
		ss := out["sessions"].([]any)
		if len(ss) != 3 {
			t.Fatalf("sessions %v", out)
		}
		s2 := ss[0].(map[string]any)
		if s2["sessionId"] != "s2" || s2["requests"] != 2.0 || s2["provider"] != "cl" || s2["model"] != "sonnet" || s2["apiKeyId"] != "k1" ||
			s2["lastSeen"] != now.Add(-time.Minute).Format(time.RFC3339) {
			t.Fatalf("s2 %v", s2)
		}
		if ss[1].(map[string]any)["sessionId"] != "s1" || ss[2].(map[string]any)["sessionId"] != "s3" {
			t.Fatalf("order %v", ss)
		}
	})

	t.Run("health", func(t *testing.T) {
		a.t = t
		out := a.get("/api/monitoring/health")
		if out["status"] != "ok" || out["catalogCount"] != 10.0 || out["configuredCount"] != 3.0 || out["activeCount"] != 2.0 || out["monitoredCount"] != 2.0 {
			t.Fatalf("health %v", out)
		}
	})

	t.Run("retention", func(t *testing.T) {
		a.t = t
		if out := a.get("/api/settings/usage-retention"); out["days"] != 30.0 {
			t.Fatalf("default retention %v", out)
		}
		for _, body := range []string{`{"days":0}`, `{"days":-3}`, `{"days":"x"}`, `nope`} {
			if code, _ := a.do("PUT", "/api/settings/usage-retention", body); code != 400 {
				t.Fatalf("%s: %d", body, code)
			}
		}
		if code, _ := a.do("PUT", "/api/settings/usage-retention", `{"days":2}`); code != 200 {
			t.Fatalf("put: %d", code)
		}
		if out := a.get("/api/settings/usage-retention"); out["days"] != 2.0 {
			t.Fatalf("retention %v", out)
		}
		n, err := rec.Sweep(ctx)
		if err != nil || n != 1 { // the record of three days ago
			t.Fatalf("sweep deleted %d (%v)", n, err)
		}
	})
}

func providers(context.Context) ([]usage.ProviderStatus, error) {
	return []usage.ProviderStatus{{ID: "oa", Active: true}, {ID: "cl", Active: true}, {ID: "off"}}, nil
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRetentionBoundsRowsAndFile writes records day after day with a one
// day retention: the row count stays bounded, the SQLite file stops
// growing, and it shrinks once the records are gone.
func TestRetentionBoundsRowsAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "omni.db")
	st := openStore(t, path)
	clk := clock.NewFake(now)
	rec := usage.New(usage.Options{Store: st, Clock: clk, Log: logging.Discard()})
	if err := st.SetSetting(ctx, store.SettingUsageRetentionDays, "1"); err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		var n int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(path + suffix); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	const perRound = 400
	msg := strings.Repeat("upstream said no. ", 28) // about the 512 bytes kept
	var sizes []int64
	for round := range 8 {
		batch := make([]store.UsageRecord, perRound)
		for i := range batch {
			batch[i] = store.UsageRecord{At: clk.Now(), Provider: "oa", Status: 500, ErrorMessage: msg, Session: "s"}
		}
		if err := st.InsertUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
		clk.Advance(13 * time.Hour)
		if _, err := rec.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := st.UsageCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > 2*perRound {
			t.Fatalf("round %d: %d rows, want at most %d", round, n, 2*perRound)
		}
		sizes = append(sizes, size())
	}
	peak := sizes[2]
	for i, s := range sizes[3:] {
		if s > peak+peak/10 {
			t.Fatalf("file grew: round %d is %d bytes, round 2 was %d (%v)", i+3, s, peak, sizes)
		}
	}
	clk.Advance(48 * time.Hour)
	if _, err := rec.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.UsageCount(ctx); n != 0 {
		t.Fatalf("%d rows left", n)
	}
	if s := size(); s > peak/2 {
		t.Fatalf("file not compacted: %d bytes after deleting everything, peak %d (%v)", s, peak, sizes)
	}
}

// TestRunSweeps checks that the running writer applies retention on its own.
func TestRunSweeps(t *testing.T) {
	st := sqliteStore(t)
	clk := clock.NewFake(now)
	if err := st.InsertUsage(ctx, []store.UsageRecord{{At: now.Add(-31 * 24 * time.Hour), Status: 200}, {At: now, Status: 200}}); err != nil {
		t.Fatal(err)
	}
	rec := usage.New(usage.Options{Store: st, Clock: clk, SweepEvery: 20 * time.Millisecond, Linger: time.Millisecond, Log: logging.Discard()})
	runRecorder(t, rec)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := st.UsageCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records, want the old one swept by Run", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
