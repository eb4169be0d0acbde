package usage_test

import (
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// The usage dashboard at scale: 1,000,000 records over 30 days, and every
// call the usage page (with its request log and live tail) makes, through
// the HTTP handlers.
//
//	go test ./internal/route/usage -run '^$' -bench Dashboard -benchtime 20x
//
// The database is built once per test binary run, in a temporary SQLite
// file (OMNI_BENCH_POSTGRES=1: also in a new schema of the test
// PostgreSQL server, see testenv.PostgresBaseDSN), and shared by the
// benchmarks, which only read it. OMNI_BENCH_USAGE_DB=<file> keeps the
// SQLite database there and reuses it in the next run (an older schema
// is migrated first, which times the migrations at this size).

// Shape of the seeded records: about 10 providers, 50 models, 100 keys,
// and a rare model and key used only on the first day (a filter on them
// finds its few records at the far end of the log).
const (
	seedRecords   = 1_000_000
	seedDays      = 30
	seedProviders = 10
	seedModels    = 5 // per provider
	seedKeys      = 100
	seedBatch     = 20_000
	seedRareEvery = 2_000 // one record in this many of the first day is the rare model's and key's
	rareModel     = "prov9/model-rare"
	rareKey       = "key-rare"
)

var seedNow = time.Date(2026, 11, 30, 12, 30, 0, 0, time.UTC)

// dashboardDB is one seeded database.
type dashboardDB struct {
	once   sync.Once
	dir    string // SQLite's temporary directory
	schema string // PostgreSQL's schema
	base   string // PostgreSQL's server
	st     *store.Store
	db     *sqldb.DB
	h      http.Handler
	err    error
}

var dashboards = map[string]*dashboardDB{"sqlite": {}, "postgres": {}}

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
	firstDay := n / seedDays
	step := float64(end.Sub(start)) / float64(n)
	batch := make([]store.UsageRecord, 0, seedBatch)
	for i := range n {
		k := rng.IntN(seedKeys)
		m := models[keyModels[k][rng.IntN(len(keyModels[k]))]]
		key := "key-" + strconv.Itoa(k)
		if i < firstDay && i%seedRareEvery == 0 {
			m, key = model{"prov9", "model-rare"}, rareKey
		}
		base := 200 + 150*int64(m.provider[len(m.provider)-1]-'0')
		r := store.UsageRecord{
			At:          start.Add(time.Duration(float64(i) * step)),
			KeyID:       key,
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
		if i%20 == 7 { // a rerank in twenty (outside the random sequence, which stays as it was)
			r.Endpoint, r.Modality, r.Unit, r.Quantity = "/v1/rerank", "rerank", "document", 100+int64(i%400)
		}
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

// open opens d's database: a temporary SQLite file, or a new schema of
// the test PostgreSQL server.
func (d *dashboardDB) open(dialect string) error {
	dsn := ""
	switch dialect {
	case "sqlite":
		if dsn = os.Getenv("OMNI_BENCH_USAGE_DB"); dsn != "" {
			break // kept, and reused when it holds the seeded records
		}
		dir, err := os.MkdirTemp("", "omni-usage-bench-")
		if err != nil {
			return err
		}
		d.dir, dsn = dir, filepath.Join(dir, "omni.db")
	case "postgres":
		d.base = testenv.PostgresBaseDSN()
		admin, err := sql.Open("pgx", d.base)
		if err != nil {
			return err
		}
		defer admin.Close()
		schema := "bench_" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(auth.RandomToken("", 9)))
		if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			return fmt.Errorf("postgres unavailable: %w", err)
		}
		d.schema = schema
		u, err := url.Parse(d.base)
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dsn = u.String()
	}
	var err error
	if d.db, err = sqldb.Open(ctx, dsn); err != nil {
		return err
	}
	d.st, err = store.New(ctx, d.db, masterKey)
	return err
}

func (d *dashboardDB) close() {
	if d.db != nil {
		d.db.Close()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	if d.schema != "" {
		if admin, err := sql.Open("pgx", d.base); err == nil {
			_, _ = admin.ExecContext(ctx, "DROP SCHEMA "+d.schema+" CASCADE")
			admin.Close()
		}
	}
}

// dashboardHandler is the usage routes over the shared seeded database of
// dialect.
func dashboardHandler(b *testing.B, dialect string) (http.Handler, *store.Store) {
	b.Helper()
	d := dashboards[dialect]
	d.once.Do(func() {
		if d.err = d.open(dialect); d.err != nil {
			return
		}
		var have int64
		if have, d.err = d.st.UsageCount(ctx); d.err != nil {
			return
		}
		if have != seedRecords {
			if have != 0 {
				d.err = fmt.Errorf("the benchmark database holds %d usage records, not 0 or %d", have, seedRecords)
				return
			}
			t0 := time.Now()
			if d.err = seedUsage(d.st, seedRecords, seedNow); d.err != nil {
				return
			}
			fmt.Fprintf(os.Stderr, "seeded %d usage records (%s) in %v\n", seedRecords, dialect, time.Since(t0).Round(time.Millisecond))
		}
		if dialect == "postgres" {
			// What autovacuum does soon after a load this size: without
			// statistics the planner guesses.
			if _, d.err = d.db.Exec(ctx, `ANALYZE`); d.err != nil {
				return
			}
		}
		rec := usage.New(usage.Options{Store: d.st, Clock: clock.NewFake(seedNow), Log: logging.Discard()})
		mux := http.NewServeMux()
		rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
		d.h = mux
	})
	if d.err != nil {
		b.Fatal(d.err)
	}
	return d.h, d.st
}

// dialects are the databases the dashboard benchmarks run on.
func dialects() []string {
	if os.Getenv("OMNI_BENCH_POSTGRES") == "1" {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range dashboards {
		d.close()
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

// pageFilters are the usage page's filters (provider, model, key; empty:
// none), common and rare.
var pageFilters = []string{"", "provider=prov3", "model=prov3/model-3-1", "model=model-3-1", "apiKeyId=key-42",
	"model=" + url.QueryEscape(rareModel), "apiKeyId=" + rareKey, "provider=prov3&apiKeyId=key-42",
	"modality=rerank"}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "&")
}

// BenchmarkDashboardUsage is each call of the usage page: the history
// and breakdown of every period, unfiltered and with each filter, the
// latency percentiles, the request log's first page (the live tail's
// reads are BenchmarkDashboardTail), and the other usage reads of the
// dashboard.
func BenchmarkDashboardUsage(b *testing.B) {
	for _, dialect := range dialects() {
		b.Run(dialect, func(b *testing.B) {
			h, _ := dashboardHandler(b, dialect)
			var paths []string
			for _, p := range []string{"1h", "24h", "7d", "30d"} {
				for _, f := range pageFilters {
					paths = append(paths, "/api/usage/history?"+join("period="+p, f))
				}
			}
			for _, p := range []string{"1h", "24h", "7d", "30d"} {
				for _, by := range []string{"provider", "model", "key", "modality", "unit"} {
					for _, f := range pageFilters {
						if p != "30d" && f != "" {
							continue // filters: the longest period
						}
						paths = append(paths, "/api/usage/groups?"+join("period="+p, f, "by="+by))
					}
				}
			}
			paths = append(paths, "/api/telemetry/summary")
			for _, p := range []string{"24h", "30d"} {
				for _, f := range pageFilters {
					paths = append(paths, "/api/usage/request-logs?"+join("period="+p, f, "limit=25"))
				}
			}
			paths = append(paths,
				"/api/usage/history?period=30d&groupBy=hour",
				"/api/usage/prov3%231",
				"/api/usage/prov3%231?period=30d",
				"/api/usage/logs?limit=50",
				"/api/usage/request-logs?limit=50&connectionId=prov3%231",
				"/api/usage/request-logs?limit=50&sessionId=sess-42-100",
				"/api/usage/request-logs?limit=50&provider=prov-unused",
				"/api/usage/request-logs?limit=50&model=model-unused",
				"/api/usage/request-logs?limit=50&apiKeyId=key-unused",
				"/api/usage/request-logs?limit=50&period=24h&apiKeyId=key-unused",
				"/api/sessions",
				"/api/monitoring/health",
			)
			for _, p := range paths {
				b.Run(p, func(b *testing.B) { benchGet(b, h, p) })
			}
		})
	}
}

// BenchmarkDashboardLogsPaging is a page of the request log (25 records,
// the 30-day period, as the usage page asks) near the start, in the
// middle and near the end of the 1,000,000 records, through the "Older"
// cursor, unfiltered and with each filter; and by offset, unfiltered. A
// steady page time is one that does not grow with the depth.
func BenchmarkDashboardLogsPaging(b *testing.B) {
	for _, dialect := range dialects() {
		b.Run(dialect, func(b *testing.B) {
			h, _ := dashboardHandler(b, dialect)
			for _, depth := range []int{0, 10_000, 500_000, 990_000} {
				b.Run("offset="+strconv.Itoa(depth), func(b *testing.B) {
					benchGet(b, h, "/api/usage/request-logs?period=30d&limit=25&offset="+strconv.Itoa(depth))
				})
				cursor := seedRecords + 1 - depth // ids run 1..seedRecords, newest highest
				for _, f := range pageFilters {
					p := "/api/usage/request-logs?" + join("period=30d", f, "limit=25", "cursor="+strconv.Itoa(cursor))
					b.Run(p, func(b *testing.B) { benchGet(b, h, p) })
				}
			}
		})
	}
}

// BenchmarkDashboardTail is the live tail's reads (GET /api/usage/tail):
// the newest record when it opens, then every second the newest 100, with
// each filter of the usage page.
func BenchmarkDashboardTail(b *testing.B) {
	for _, dialect := range dialects() {
		b.Run(dialect, func(b *testing.B) {
			_, st := dashboardHandler(b, dialect)
			for _, f := range pageFilters {
				q, err := url.ParseQuery(f)
				if err != nil {
					b.Fatal(err)
				}
				uf := store.UsageFilter{Provider: q.Get("provider"), Model: q.Get("model"), KeyID: q.Get("apiKeyId")}
				for _, n := range []int{1, 100} {
					b.Run(fmt.Sprintf("%s&limit=%d", f, n), func(b *testing.B) {
						b.ReportAllocs()
						for b.Loop() {
							if _, err := st.UsageLogs(ctx, uf, n, 0); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}
