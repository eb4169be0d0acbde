package usage_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// The usage dashboard at scale: 1,000,000 records over 30 days in SQLite,
// and every call the usage page makes, through the HTTP handlers.
//
//	go test ./internal/route/usage -run '^$' -bench Dashboard -benchtime 20x
//
// The database is built once per test binary run, in a temporary file
// (about 15 s), and shared by the benchmarks, which only read it.

// Shape of the seeded records: about 10 providers, 50 models, 100 keys.
const (
	seedRecords   = 1_000_000
	seedDays      = 30
	seedProviders = 10
	seedModels    = 5 // per provider
	seedKeys      = 100
	seedBatch     = 20_000
)

var seedNow = time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)

var dashboard struct {
	once sync.Once
	dir  string
	st   *store.Store
	db   *sqldb.DB
	h    http.Handler
	err  error
}

// seedUsage fills st with n records spread evenly over the days before
// end, oldest first (ids follow time, as the batched writer makes them).
// Each key uses a handful of models; statuses, latencies, tokens, costs,
// streaming, sessions and fallback attempts vary like a busy gateway's.
func seedUsage(st *store.Store, n int, end time.Time) error {
	rng := rand.New(rand.NewPCG(1, 2))
	type model struct{ provider, name string }
	var models []model
	for p := range seedProviders {
		for m := range seedModels {
			models = append(models, model{fmt.Sprintf("prov%d", p), fmt.Sprintf("model-%d-%d", p, m)})
		}
	}
	keyModels := make([][]int, seedKeys)
	for k := range keyModels {
		for range 4 {
			keyModels[k] = append(keyModels[k], rng.IntN(len(models)))
		}
	}
	start := end.Add(-seedDays * 24 * time.Hour)
	step := float64(end.Sub(start)) / float64(n)
	batch := make([]store.UsageRecord, 0, seedBatch)
	for i := range n {
		k := rng.IntN(seedKeys)
		m := models[keyModels[k][rng.IntN(len(keyModels[k]))]]
		base := 200 + 150*int64(m.provider[len(m.provider)-1]-'0')
		r := store.UsageRecord{
			At:          start.Add(time.Duration(float64(i) * step)),
			KeyID:       "key-" + strconv.Itoa(k),
			Endpoint:    "/v1/chat/completions",
			Model:       m.provider + "/" + m.name,
			Provider:    m.provider,
			Connection:  m.provider + "#" + strconv.Itoa(rng.IntN(2)+1),
			TargetModel: m.name,
			LatencyMS:   base + int64(rng.ExpFloat64()*float64(base)),
			Status:      200,
			Attempts:    1,
			Stream:      rng.IntN(3) == 0,
		}
		r.InputTokens = int64(50 + rng.IntN(4000))
		r.OutputTokens = int64(10 + rng.IntN(1000))
		r.CostUSD = math.Round((float64(r.InputTokens)*2.5e-6+float64(r.OutputTokens)*10e-6)*1e6) / 1e6
		r.TTFTMS = r.LatencyMS / 4
		if rng.IntN(10) == 0 {
			r.CacheReadTokens = int64(rng.IntN(2000))
		}
		if rng.IntN(5) == 0 {
			r.Session = fmt.Sprintf("sess-%d-%d", k, i/5000)
		}
		switch x := rng.IntN(100); {
		case x < 2:
			r.Status, r.ErrorType, r.ErrorMessage = 429, "rate_limit_error", "rate limited by the gateway"
			r.Provider, r.Connection, r.TargetModel, r.InputTokens, r.OutputTokens, r.CostUSD, r.Attempts = "", "", "", 0, 0, 0, 0
		case x < 4:
			r.Status, r.ErrorType, r.ErrorMessage, r.Attempts = 502, "api_error", "upstream returned 503", 2
			r.AttemptsJSON = `[{"provider":"` + m.provider + `","status":503},{"provider":"` + m.provider + `","status":503}]`
			r.OutputTokens, r.CostUSD = 0, 0
		case x < 5:
			r.Status, r.ErrorType, r.ErrorMessage, r.Attempts = 400, "invalid_request_error", "bad request", 1
			r.OutputTokens, r.CostUSD = 0, 0
		case x < 8:
			r.Attempts = 2
			r.AttemptsJSON = `[{"provider":"` + m.provider + `","status":500},{"provider":"` + m.provider + `","status":200}]`
		}
		batch = append(batch, r)
		if len(batch) == seedBatch || i == n-1 {
			if err := st.InsertUsage(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// dashboardHandler is the usage routes over the shared seeded database.
func dashboardHandler(b *testing.B) http.Handler {
	b.Helper()
	d := &dashboard
	d.once.Do(func() {
		d.dir, d.err = os.MkdirTemp("", "omni-usage-bench-")
		if d.err != nil {
			return
		}
		d.db, d.err = sqldb.Open(ctx, filepath.Join(d.dir, "omni.db"))
		if d.err != nil {
			return
		}
		d.st, d.err = store.New(ctx, d.db, masterKey)
		if d.err != nil {
			return
		}
		t0 := time.Now()
		if d.err = seedUsage(d.st, seedRecords, seedNow); d.err != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "seeded %d usage records in %v\n", seedRecords, time.Since(t0).Round(time.Millisecond))
		rec := usage.New(usage.Options{Store: d.st, Clock: clock.NewFake(seedNow), Log: logging.Discard()})
		mux := http.NewServeMux()
		rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
		d.h = mux
	})
	if d.err != nil {
		b.Fatal(d.err)
	}
	return d.h
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dashboard.db != nil {
		dashboard.db.Close()
	}
	if dashboard.dir != "" {
		os.RemoveAll(dashboard.dir)
	}
	os.Exit(code)
}

func benchGet(b *testing.B, h http.Handler, path string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
}

// BenchmarkDashboardUsage is each call of the usage page.
func BenchmarkDashboardUsage(b *testing.B) {
	h := dashboardHandler(b)
	var paths []string
	for _, p := range []string{"1h", "24h", "7d", "30d"} {
		paths = append(paths, "/api/usage/history?period="+p)
		for _, f := range []string{"provider=prov3", "model=prov3/model-3-1", "apiKeyId=key-42"} {
			paths = append(paths, "/api/usage/history?period="+p+"&"+f)
		}
	}
	paths = append(paths,
		"/api/usage/history?period=30d&groupBy=hour",
		"/api/telemetry/summary",
		"/api/usage/prov3%231",
		"/api/usage/prov3%231?period=30d",
		"/api/usage/logs?limit=50",
		"/api/usage/request-logs?limit=50",
		"/api/usage/request-logs?limit=50&provider=prov3",
		"/api/usage/request-logs?limit=50&model=prov3/model-3-1",
		"/api/usage/request-logs?limit=50&apiKeyId=key-42",
		"/api/usage/request-logs?limit=50&apiKeyId=key-unused",
		"/api/usage/request-logs?limit=50&connectionId=prov3%231",
		"/api/usage/request-logs?limit=50&sessionId=sess-42-100",
		"/api/usage/request-logs?limit=50&provider=prov-unused",
		"/api/usage/request-logs?limit=50&model=model-unused",
		"/api/usage/request-logs?limit=50&period=24h",
		"/api/usage/request-logs?limit=50&period=30d&provider=prov3",
		"/api/usage/request-logs?limit=50&period=30d&connectionId=prov3%231",
		"/api/usage/request-logs?limit=50&period=24h&apiKeyId=key-unused",
		"/api/sessions",
		"/api/monitoring/health",
	)
	for _, p := range paths {
		b.Run(p, func(b *testing.B) { benchGet(b, h, p) })
	}
}

// BenchmarkDashboardLogsPaging is a page of 50 request logs near the
// start, in the middle and near the end of the 1,000,000 records, by
// offset and by cursor: a steady page time is one that does not grow
// with the depth.
func BenchmarkDashboardLogsPaging(b *testing.B) {
	h := dashboardHandler(b)
	for _, depth := range []int{0, 10_000, 500_000, 990_000} {
		b.Run("offset="+strconv.Itoa(depth), func(b *testing.B) {
			benchGet(b, h, "/api/usage/request-logs?limit=50&offset="+strconv.Itoa(depth))
		})
		cursor := seedRecords + 1 - depth // ids run 1..seedRecords, newest highest
		b.Run("cursor="+strconv.Itoa(depth), func(b *testing.B) {
			benchGet(b, h, "/api/usage/request-logs?limit=50&cursor="+strconv.Itoa(cursor))
		})
		b.Run("cursor="+strconv.Itoa(depth)+"&provider", func(b *testing.B) {
			benchGet(b, h, "/api/usage/request-logs?limit=50&provider=prov3&cursor="+strconv.Itoa(cursor))
		})
	}
}
