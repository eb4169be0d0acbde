package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
)

func TestUsageSQLite(t *testing.T) { runUsageSuite(t, openSQLite) }

func TestUsagePostgres(t *testing.T) {
	testenv.Postgres(t)
	runUsageSuite(t, openPostgres)
}

func runUsageSuite(t *testing.T, open func(t *testing.T) *store.Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"RoundTrip", testUsageRoundTrip},
		{"Aggregates", testUsageAggregates},
		{"Delete", testUsageDelete},
		{"Hourly", testUsageHourly},
		{"HourlyBackfill", testUsageHourlyBackfill},
		{"Modality", testUsageModality},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var usageT0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func testUsageRoundTrip(t *testing.T, s *store.Store) {
	in := store.UsageRecord{At: usageT0.Add(1500 * time.Millisecond), KeyID: "key_1", Endpoint: "/v1/chat/completions",
		Model: "smart", Provider: "oa", Connection: "oa#2", TargetModel: "gpt-4o", InputTokens: 10, OutputTokens: 20,
		CacheReadTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, Estimated: true, CostUSD: 0.0125, LatencyMS: 900,
		TTFTMS: 300, Status: 200, Attempts: 2, AttemptsJSON: `[{"provider":"oa"}]`, Cache: "MISS", Idempotent: true,
		Stream: true, Session: "s1"}
	fail := store.UsageRecord{At: usageT0.Add(2 * time.Second), Model: "x", Status: 429, ErrorType: "rate_limit_error", ErrorMessage: "slow down"}
	must(t, s.InsertUsage(ctx, []store.UsageRecord{in, fail}))
	got, err := s.UsageLogs(ctx, store.UsageFilter{}, 10, 0)
	must(t, err)
	if len(got) != 2 || got[0].ErrorMessage != "slow down" || got[0].Status != 429 || got[0].AttemptsJSON != "[]" {
		t.Fatalf("logs = %+v", got)
	}
	r := got[1]
	in.ID = r.ID
	if r != in {
		t.Fatalf("round trip:\n got %+v\nwant %+v", r, in)
	}
	// A batch whose optional fields are all empty leaves those columns
	// to their DEFAULTs, which read back as the zero values.
	bare := []store.UsageRecord{{At: usageT0.Add(3 * time.Second), Model: "m"}, {At: usageT0.Add(4 * time.Second), Status: 200, AttemptsJSON: "[]"}}
	must(t, s.InsertUsage(ctx, bare))
	back, err := s.UsageLogs(ctx, store.UsageFilter{Since: usageT0.Add(3 * time.Second)}, 10, 0)
	must(t, err)
	bare[0].AttemptsJSON, bare[1].AttemptsJSON = "[]", "[]"
	if len(back) != 2 {
		t.Fatalf("bare rows = %+v", back)
	}
	for i, want := range []store.UsageRecord{bare[1], bare[0]} {
		want.ID = back[i].ID
		if back[i] != want {
			t.Fatalf("bare round trip:\n got %+v\nwant %+v", back[i], want)
		}
	}
	// Many rows in one call (several multi-row statements).
	many := make([]store.UsageRecord, 123)
	for i := range many {
		many[i] = store.UsageRecord{At: usageT0, Status: 200, InputTokens: 1}
	}
	must(t, s.InsertUsage(ctx, many))
	n, err := s.UsageCount(ctx)
	must(t, err)
	if n != 127 {
		t.Fatalf("count %d, want 127", n)
	}
	// Cursor pagination: ids strictly below the cursor.
	page, err := s.UsageLogs(ctx, store.UsageFilter{Before: got[1].ID + 1}, 10, 0)
	must(t, err)
	if len(page) != 1 || page[0].ID != got[1].ID {
		t.Fatalf("cursor page = %+v", page)
	}
}

// A record of a modality beyond chat keeps its modality, unit and
// quantity beside chat records, which leave them empty.
func testUsageModality(t *testing.T, s *store.Store) {
	op := store.UsageRecord{At: usageT0, Endpoint: "/v1/rerank", Model: "co/rerank-v3.5", Provider: "co", TargetModel: "rerank-v3.5",
		Status: 200, CostUSD: 0.004, AttemptsJSON: "[]", Modality: "rerank", Unit: "document", Quantity: 250}
	chat := store.UsageRecord{At: usageT0.Add(time.Second), Model: "m", Status: 200, AttemptsJSON: "[]", InputTokens: 3}
	must(t, s.InsertUsage(ctx, []store.UsageRecord{op, chat}))
	got, err := s.UsageLogs(ctx, store.UsageFilter{}, 10, 0)
	must(t, err)
	op.ID, chat.ID = got[1].ID, got[0].ID
	if len(got) != 2 || got[1] != op || got[0] != chat {
		t.Fatalf("modality round trip:\n got %+v\nwant %+v, %+v", got, chat, op)
	}
}

func testUsageAggregates(t *testing.T, s *store.Store) {
	h := time.Hour
	recs := []store.UsageRecord{
		{At: usageT0.Add(5 * time.Minute), Provider: "oa", TargetModel: "gpt-4o", Model: "gpt", Connection: "oa#1", KeyID: "k1", InputTokens: 10, OutputTokens: 5, CostUSD: 0.5, LatencyMS: 100, Status: 200, Session: "a"},
		{At: usageT0.Add(50 * time.Minute), Provider: "oa", TargetModel: "gpt-4o", Model: "gpt", Connection: "oa#2", KeyID: "k2", InputTokens: 20, OutputTokens: 5, CacheReadTokens: 7, CostUSD: 0.25, LatencyMS: 300, Status: 200, Session: "a"},
		{At: usageT0.Add(h + time.Minute), Provider: "cl", TargetModel: "sonnet", Model: "cl/sonnet", Connection: "cl#1", KeyID: "k1", InputTokens: 1, OutputTokens: 1, CostUSD: 1, LatencyMS: 50, Status: 502, ErrorType: "api_error"},
		{At: usageT0.Add(h + 2*time.Minute), Model: "gpt", KeyID: "k1", Status: 429},
		{At: usageT0.Add(25 * h), Provider: "oa", TargetModel: "gpt-4o", Model: "gpt", Connection: "oa#1", KeyID: "k1", InputTokens: 100, CostUSD: 2, LatencyMS: 700, Status: 200},
	}
	must(t, s.InsertUsage(ctx, recs))
	tests := []struct {
		name   string
		f      store.UsageFilter
		width  time.Duration
		starts []time.Time
		reqs   []int64
		errs   []int64
		tokens []int64
		cost   []float64
	}{
		{"hourly all", store.UsageFilter{}, h, []time.Time{usageT0, usageT0.Add(h), usageT0.Add(25 * h)}, []int64{2, 2, 1}, []int64{0, 2, 0}, []int64{47, 2, 100}, []float64{0.75, 1, 2}},
		{"daily", store.UsageFilter{}, 24 * h, []time.Time{usageT0.Truncate(24 * h), usageT0.Truncate(24 * h).Add(24 * h)}, []int64{4, 1}, []int64{2, 0}, []int64{49, 100}, []float64{1.75, 2}},
		{"provider", store.UsageFilter{Provider: "cl"}, h, []time.Time{usageT0.Add(h)}, []int64{1}, []int64{1}, []int64{2}, []float64{1}},
		{"model by client name", store.UsageFilter{Model: "gpt"}, 24 * h, []time.Time{usageT0.Truncate(24 * h), usageT0.Truncate(24 * h).Add(24 * h)}, []int64{3, 1}, []int64{1, 0}, []int64{47, 100}, []float64{0.75, 2}},
		{"model by target", store.UsageFilter{Model: "cl/sonnet"}, h, []time.Time{usageT0.Add(h)}, []int64{1}, []int64{1}, []int64{2}, []float64{1}},
		{"key and since", store.UsageFilter{KeyID: "k1", Since: usageT0.Add(h)}, h, []time.Time{usageT0.Add(h), usageT0.Add(25 * h)}, []int64{2, 1}, []int64{2, 0}, []int64{2, 100}, []float64{1, 2}},
		{"connection", store.UsageFilter{Connection: "oa#2"}, h, []time.Time{usageT0}, []int64{1}, []int64{0}, []int64{32}, []float64{0.25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.UsageBuckets(ctx, tc.f, tc.width)
			must(t, err)
			if len(got) != len(tc.starts) {
				t.Fatalf("buckets %+v", got)
			}
			var sum store.UsageTotals
			for i, b := range got {
				if !b.Start.Equal(tc.starts[i]) || b.Requests != tc.reqs[i] || b.Errors != tc.errs[i] || b.TotalTokens != tc.tokens[i] || !near(b.CostUSD, tc.cost[i]) {
					t.Fatalf("bucket %d = %+v", i, b)
				}
				sum.Requests += b.Requests
				sum.TotalTokens += b.TotalTokens
			}
			tot, err := s.UsageTotals(ctx, tc.f)
			must(t, err)
			if tot.Requests != sum.Requests || tot.TotalTokens != sum.TotalTokens {
				t.Fatalf("totals %+v, buckets sum %+v", tot, sum)
			}
		})
	}
	tot, err := s.UsageTotals(ctx, store.UsageFilter{Provider: "oa", Until: usageT0.Add(h)})
	must(t, err)
	if tot.Requests != 2 || tot.InputTokens != 30 || tot.OutputTokens != 10 || tot.CacheReadTokens != 7 || tot.AvgLatencyMS != 200 {
		t.Fatalf("oa totals %+v", tot)
	}

	lat, err := s.UsageLatencies(ctx, usageT0, 100)
	must(t, err)
	if len(lat) != 3 || lat[0].LatencyMS != 700 || lat[2].LatencyMS != 100 { // the 502 and the refusal are left out
		t.Fatalf("latencies %+v", lat)
	}
	sess, err := s.UsageSessionRows(ctx, usageT0, 100)
	must(t, err)
	if len(sess) != 2 || sess[0].Session != "a" || !sess[0].At.Before(sess[1].At) || sess[1].KeyID != "k2" {
		t.Fatalf("session rows %+v", sess)
	}
	provs, err := s.UsageProviders(ctx, usageT0.Add(h))
	must(t, err)
	if len(provs) != 2 {
		t.Fatalf("providers since +1h: %v", provs)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func testUsageDelete(t *testing.T, s *store.Store) {
	var recs []store.UsageRecord
	for i := range 30 {
		recs = append(recs, store.UsageRecord{At: usageT0.Add(time.Duration(i) * time.Minute), Status: 200})
	}
	must(t, s.InsertUsage(ctx, recs))
	n, err := s.DeleteUsageBefore(ctx, usageT0.Add(20*time.Minute), 8)
	must(t, err)
	if n != 8 {
		t.Fatalf("deleted %d, want the batch of 8", n)
	}
	n, err = s.DeleteUsageBefore(ctx, usageT0.Add(20*time.Minute), 100)
	must(t, err)
	if n != 12 {
		t.Fatalf("deleted %d, want the remaining 12", n)
	}
	left, err := s.UsageLogs(ctx, store.UsageFilter{}, 100, 0)
	must(t, err)
	if len(left) != 10 || left[9].At.Before(usageT0.Add(20*time.Minute)) {
		t.Fatalf("left %d records, oldest %v", len(left), left[len(left)-1].At)
	}
	must(t, s.CompactUsage(ctx))
	must(t, s.CompactUsage(ctx)) // the second time takes the incremental path
}

// BenchmarkInsertUsageSQLite writes batches of 500 typical records, as the
// usage writer does under load; ns/op is per batch.
func BenchmarkInsertUsageSQLite(b *testing.B) {
	db, err := sqldb.Open(ctx, filepath.Join(b.TempDir(), "omni.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := store.New(ctx, db, masterKey)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]store.UsageRecord, 500)
	for i := range recs {
		recs[i] = store.UsageRecord{At: usageT0.Add(time.Duration(i) * time.Millisecond), KeyID: "key_0123456789",
			Endpoint: "/v1/chat/completions", Model: "bench/bench-model", Provider: "bench", Connection: "bench#1",
			TargetModel: "bench-model", InputTokens: 25, OutputTokens: 12, CostUSD: 0.000123, LatencyMS: 1, Status: 200,
			Attempts: 1, AttemptsJSON: `[{"provider":"bench","model":"bench-model","connection":"bench#1","status":200}]`}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.InsertUsage(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
}
