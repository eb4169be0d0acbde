package store_test

import (
	"cmp"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/store/migrations"
)

// hourlyRecords are records over three days at odd times, with every
// dimension the hourly sums keep, refusals without a provider, and
// models named by alias, by target and by provider/target.
func hourlyRecords(n int) []store.UsageRecord {
	rng := rand.New(rand.NewPCG(7, 8))
	out := make([]store.UsageRecord, n)
	for i := range out {
		p := fmt.Sprintf("p%d", rng.IntN(3))
		tm := fmt.Sprintf("m%d", rng.IntN(3))
		model := []string{p + "/" + tm, tm, "alias"}[rng.IntN(3)]
		r := store.UsageRecord{At: usageT0.Add(time.Duration(rng.Int64N(int64(72 * time.Hour)))), KeyID: fmt.Sprintf("k%d", rng.IntN(3)),
			Model: model, Provider: p, Connection: p + "#1", TargetModel: tm, InputTokens: rng.Int64N(100), OutputTokens: rng.Int64N(50),
			CacheReadTokens: rng.Int64N(5), CacheWriteTokens: rng.Int64N(5), ReasoningTokens: rng.Int64N(5),
			CostUSD: float64(rng.IntN(1000)) / 1e4, LatencyMS: rng.Int64N(2000), Status: 200, Session: []string{"", "s1"}[rng.IntN(2)]}
		if rng.IntN(10) == 0 {
			r.Status, r.Provider, r.Connection, r.TargetModel = 429, "", "", ""
		}
		if rng.IntN(15) == 0 {
			r.KeyID = "" // an open gateway's call
		}
		if rng.IntN(40) == 0 {
			r.Model = ""
		}
		switch rng.IntN(8) { // the modalities beyond chat, in their units
		case 0:
			r.Modality, r.Unit, r.Quantity = "rerank", "document", rng.Int64N(500)
		case 1:
			r.Modality, r.Unit, r.Quantity = "audio", "second", rng.Int64N(600)
		case 2:
			r.Modality, r.Unit, r.Quantity = "audio", "character", rng.Int64N(4000)
		case 3:
			r.Modality = "image" // refused before its units were known
		}
		out[i] = r
	}
	return out
}

// naiveTotals sums recs matching f in Go.
func naiveTotals(recs []store.UsageRecord, f store.UsageFilter) store.UsageTotals {
	var t store.UsageTotals
	var lat int64
	for _, r := range recs {
		if (!f.Since.IsZero() && r.At.Before(f.Since)) || (!f.Until.IsZero() && !r.At.Before(f.Until)) ||
			(f.Provider != "" && r.Provider != f.Provider) || (f.KeyID != "" && r.KeyID != f.KeyID) ||
			(f.Connection != "" && r.Connection != f.Connection) || (f.Session != "" && r.Session != f.Session) ||
			(f.Model != "" && r.Model != f.Model && r.TargetModel != f.Model && r.Provider+"/"+r.TargetModel != f.Model) ||
			(f.Modality == "chat" && r.Modality != "") || (f.Modality != "" && f.Modality != "chat" && r.Modality != f.Modality) {
			continue
		}
		t.Quantity += r.Quantity
		t.Requests++
		if r.Status >= 400 {
			t.Errors++
		}
		t.InputTokens += r.InputTokens
		t.OutputTokens += r.OutputTokens
		t.CacheReadTokens += r.CacheReadTokens
		t.CacheWriteTokens += r.CacheWriteTokens
		t.ReasoningTokens += r.ReasoningTokens
		t.CostUSD += r.CostUSD
		lat += r.LatencyMS
	}
	t.TotalTokens = t.InputTokens + t.OutputTokens + t.CacheReadTokens + t.CacheWriteTokens
	if t.Requests > 0 {
		t.AvgLatencyMS = float64(lat) / float64(t.Requests)
	}
	return t
}

func sameTotals(a, b store.UsageTotals) bool {
	costOK := math.Abs(a.CostUSD-b.CostUSD) < 1e-9
	latOK := math.Abs(a.AvgLatencyMS-b.AvgLatencyMS) < 1e-9
	a.CostUSD, b.CostUSD, a.AvgLatencyMS, b.AvgLatencyMS = 0, 0, 0, 0
	return costOK && latOK && a == b
}

func hourlyFilters() []store.UsageFilter {
	h := time.Hour
	var out []store.UsageFilter
	for _, span := range []struct{ since, until time.Time }{
		{}, {since: usageT0.Add(5 * h)}, {since: usageT0.Add(5*h + 17*time.Minute)},
		{since: usageT0.Add(3*h + time.Second), until: usageT0.Add(50*h + 59*time.Minute)},
		{since: usageT0.Add(7*h + time.Minute), until: usageT0.Add(7*h + 40*time.Minute)},
		{until: usageT0.Add(30*h + 1)},
	} {
		for _, f := range []store.UsageFilter{{}, {Provider: "p1"}, {Model: "m2"}, {Model: "p0/m1"}, {Model: "alias"},
			{KeyID: "k2"}, {Connection: "p2#1"}, {Session: "s1"}, {Provider: "p1", KeyID: "k0"}, {Before: 100},
			{Model: "m2", KeyID: "k1"}, {Model: "alias", Provider: "p2"}, {Model: "p0/m1", Provider: "p0", KeyID: "k0"},
			{Provider: "p0", Connection: "p0#1"}, {Model: "nope", KeyID: "k1"}, {Modality: "audio"}, {Modality: "chat"},
			{Modality: "rerank", KeyID: "k1"}, {Modality: "audio", Model: "m1", Provider: "p1"}, {Modality: "image", Session: "s1"}} {
			f.Since, f.Until = span.since, span.until
			out = append(out, f)
		}
	}
	return out
}

// checkHourly compares the store's totals and day and hour buckets with
// sums of recs.
func checkHourly(t *testing.T, s *store.Store, recs []store.UsageRecord, idOf func(i int) int64) {
	t.Helper()
	for _, f := range hourlyFilters() {
		want := recs
		if f.Before != 0 {
			want = nil
			for i, r := range recs {
				if idOf(i) < f.Before {
					want = append(want, r)
				}
			}
		}
		got, err := s.UsageTotals(ctx, f)
		must(t, err)
		if w := naiveTotals(want, f); !sameTotals(got, w) {
			t.Fatalf("%+v: totals %+v, want %+v", f, got, w)
		}
		checkGroups(t, s, want, f)
		for _, width := range []time.Duration{time.Hour, 24 * time.Hour, 90 * time.Minute} {
			bs, err := s.UsageBuckets(ctx, f, width)
			must(t, err)
			var n int64
			for i, b := range bs {
				bf := f
				if bf.Since.IsZero() || b.Start.After(bf.Since) {
					bf.Since = b.Start
				}
				if end := b.Start.Add(width); bf.Until.IsZero() || end.Before(bf.Until) {
					bf.Until = end
				}
				if w := naiveTotals(want, bf); !sameTotals(b.UsageTotals, w) || (i > 0 && !b.Start.After(bs[i-1].Start)) {
					t.Fatalf("%+v by %v: bucket %v %+v, want %+v", f, width, b.Start, b.UsageTotals, w)
				}
				n += b.Requests
			}
			if n != got.Requests {
				t.Fatalf("%+v by %v: buckets hold %d requests, totals %d", f, width, n, got.Requests)
			}
		}
	}
}

// checkGroups compares the store's breakdowns of f (per provider, model
// and key, the top 3 and all) with sums of recs, which match f but for
// its cursor.
func checkGroups(t *testing.T, s *store.Store, recs []store.UsageRecord, f store.UsageFilter) {
	t.Helper()
	cursorless := f
	cursorless.Before = 0
	for _, by := range []string{"provider", "model", "key", "modality", "unit"} {
		col := map[string]func(r store.UsageRecord) string{
			"provider": func(r store.UsageRecord) string { return r.Provider },
			"model":    func(r store.UsageRecord) string { return r.Model },
			"key":      func(r store.UsageRecord) string { return r.KeyID },
			"modality": func(r store.UsageRecord) string { return r.Modality },
			"unit":     func(r store.UsageRecord) string { return r.Unit },
		}[by]
		var keys []string
		seen := map[string]bool{}
		for _, r := range recs {
			if by == "unit" && r.Unit == "" {
				continue // chat uses no unit
			}
			if k := col(r); !seen[k] && naiveTotals([]store.UsageRecord{r}, cursorless).Requests == 1 {
				seen[k] = true
				keys = append(keys, k)
			}
		}
		want := make([]store.UsageGroup, 0, len(keys))
		for _, k := range keys {
			var mine []store.UsageRecord
			for _, r := range recs {
				if col(r) == k {
					mine = append(mine, r)
				}
			}
			want = append(want, store.UsageGroup{Key: k, UsageTotals: naiveTotals(mine, cursorless)})
		}
		slices.SortFunc(want, func(a, b store.UsageGroup) int {
			return cmp.Or(cmp.Compare(b.Requests, a.Requests), strings.Compare(a.Key, b.Key))
		})
		for _, limit := range []int{3, 100} {
			got, err := s.UsageGroups(ctx, f, by, limit)
			must(t, err)
			w := want[:min(limit, len(want))]
			ok := len(got) == len(w)
			for i := 0; ok && i < len(w); i++ {
				ok = got[i].Key == w[i].Key && sameTotals(got[i].UsageTotals, w[i].UsageTotals)
			}
			if !ok {
				t.Fatalf("%+v by %s, limit %d:\n got %+v\nwant %+v", f, by, limit, got, w)
			}
		}
	}
}

func testUsageHourly(t *testing.T, s *store.Store) {
	recs := hourlyRecords(600)
	// Several batches, the first larger than one INSERT holds.
	must(t, s.InsertUsage(ctx, recs[:450]))
	for i := 450; i < len(recs); i += 50 {
		must(t, s.InsertUsage(ctx, recs[i:i+50]))
	}
	id := func(i int) int64 { return int64(i + 1) }
	checkHourly(t, s, recs, id)
	// Providers served since a time, whole and partial hours.
	for _, since := range []time.Time{usageT0, usageT0.Add(30*time.Hour + 20*time.Minute), usageT0.Add(71*time.Hour + 59*time.Minute)} {
		got, err := s.UsageProviders(ctx, since)
		must(t, err)
		seen := map[string]bool{}
		for _, r := range recs {
			if r.Provider != "" && !r.At.Before(since) {
				seen[r.Provider] = true
			}
		}
		if len(got) != len(seen) {
			t.Fatalf("providers since %v: %v, want %v", since, got, seen)
		}
		for _, p := range got {
			if !seen[p] {
				t.Fatalf("providers since %v: %v, want %v", since, got, seen)
			}
		}
	}
	// The logs' model filter consults the sums first.
	for _, f := range []store.UsageFilter{{Model: "m2"}, {Model: "nope"}, {Model: "alias", Since: usageT0.Add(70 * time.Hour)},
		{KeyID: "k1", Since: usageT0.Add(10 * time.Hour)}, {Connection: "p0#1", Until: usageT0.Add(9 * time.Hour)}} {
		logs, err := s.UsageLogs(ctx, f, 1000, 0)
		must(t, err)
		if want := naiveTotals(recs, f).Requests; int64(len(logs)) != want {
			t.Fatalf("%+v: %d logs, want %d", f, len(logs), want)
		}
	}

	// Pages of the logs, by cursor and by offset, are the matching
	// records newest first, with each filter: the model filter's union of
	// three index walks included.
	for _, f := range []store.UsageFilter{{}, {Model: "m2"}, {Model: "p0/m1"}, {Model: "alias"}, {Model: "m1", KeyID: "k1"},
		{Model: "m0", Provider: "p2", Since: usageT0.Add(20 * time.Hour)}, {Model: "alias", Session: "s1", Until: usageT0.Add(60 * time.Hour)},
		{Provider: "p1"}, {KeyID: "k0", Since: usageT0.Add(30 * time.Hour)}} {
		var want []int64
		for i := len(recs) - 1; i >= 0; i-- {
			if naiveTotals(recs[i:i+1], f).Requests == 1 {
				want = append(want, id(i))
			}
		}
		var byCursor, byOffset []int64
		for page := f; ; {
			logs, err := s.UsageLogs(ctx, page, 7, 0)
			must(t, err)
			for _, l := range logs {
				byCursor = append(byCursor, l.ID)
			}
			if len(logs) < 7 {
				break
			}
			page.Before = logs[len(logs)-1].ID
		}
		for off := 0; ; off += 7 {
			logs, err := s.UsageLogs(ctx, f, 7, off)
			must(t, err)
			for _, l := range logs {
				byOffset = append(byOffset, l.ID)
			}
			if len(logs) < 7 {
				break
			}
		}
		if !slices.Equal(byCursor, want) || !slices.Equal(byOffset, want) || len(want) == 0 {
			t.Fatalf("%+v: logs by cursor %v, by offset %v, want %v", f, byCursor, byOffset, want)
		}
	}

	// Retention deletes the oldest ids first; the sums follow.
	cut := usageT0.Add(40 * time.Hour)
	var left []store.UsageRecord
	var leftIDs []int64
	deleted := 0
	for i, r := range recs {
		if r.At.Before(cut) && deleted < 120 {
			deleted++
			continue
		}
		left, leftIDs = append(left, r), append(leftIDs, id(i))
	}
	n, err := s.DeleteUsageBefore(ctx, cut, 120)
	must(t, err)
	if n != 120 {
		t.Fatalf("deleted %d, want 120", n)
	}
	checkHourly(t, s, left, func(i int) int64 { return leftIDs[i] })
	for {
		n, err := s.DeleteUsageBefore(ctx, usageT0.Add(100*time.Hour), 1000)
		must(t, err)
		if n == 0 {
			break
		}
	}
	var rows int
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM route_usage_hourly`).Scan(&rows))
	if rows != 0 {
		t.Fatalf("%d hourly rows left after every record went", rows)
	}
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM route_usage_hourly_detail`).Scan(&rows))
	if rows != 0 {
		t.Fatalf("%d hourly detail rows left after every record went", rows)
	}
}

// testUsageHourlyBackfill runs the migration's INSERT, which fills the
// sums from the records of an existing database, and compares its rows
// with those the writer made.
func testUsageHourlyBackfill(t *testing.T, s *store.Store) {
	must(t, s.InsertUsage(ctx, hourlyRecords(300)))
	dump := func() string {
		rows, err := s.DB().Query(ctx, `SELECT dim, val, hour, requests, errors, input_tokens, output_tokens, cache_read_tokens,
			cache_write_tokens, reasoning_tokens, latency_ms, quantity, ROUND(cost_usd * 10000) FROM route_usage_hourly ORDER BY dim, val, hour`)
		must(t, err)
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var dim, val string
			var v [10]int64
			var cost float64
			must(t, rows.Scan(&dim, &val, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &cost))
			fmt.Fprintf(&b, "%s=%s %v %.0f\n", dim, val, v, cost)
		}
		must(t, rows.Err())
		return b.String()
	}
	dumpDetail := func() string {
		rows, err := s.DB().Query(ctx, `SELECT hour, key_id, provider, model, target_model, modality, unit, requests, errors,
			input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, latency_ms, quantity,
			ROUND(cost_usd * 10000) FROM route_usage_hourly_detail ORDER BY hour, key_id, provider, model, target_model, modality, unit`)
		must(t, err)
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var hour int64
			var k, p, m, tm, mod, unit string
			var v [9]int64
			var cost float64
			must(t, rows.Scan(&hour, &k, &p, &m, &tm, &mod, &unit, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &cost))
			fmt.Fprintf(&b, "%d %s %s %s %s %s %s %v %.0f\n", hour, k, p, m, tm, mod, unit, v, cost)
		}
		must(t, rows.Err())
		return b.String()
	}
	written, writtenDetail := dump(), dumpDetail()
	_, err := s.DB().Exec(ctx, `DELETE FROM route_usage_hourly`)
	must(t, err)
	_, err = s.DB().Exec(ctx, `DELETE FROM route_usage_hourly_detail`)
	must(t, err)
	// The last migration that added sums rebuilds them with one INSERT
	// per table.
	for _, name := range []string{"20261216010000_usage_modality.sql"} {
		sqlText, err := fs.ReadFile(migrations.FS, string(s.DB().Dialect)+"/"+name)
		must(t, err)
		for _, table := range []string{"route_usage_hourly (", "route_usage_hourly_detail ("} {
			i := strings.Index(string(sqlText), "INSERT INTO "+table)
			if i < 0 {
				continue
			}
			stmt := string(sqlText[i:])
			stmt = stmt[:strings.Index(stmt, ";")]
			_, err = s.DB().Exec(ctx, stmt)
			must(t, err)
		}
	}
	if got := dumpDetail(); got != writtenDetail || writtenDetail == "" {
		t.Fatalf("backfilled detail differs from the written one:\n%s\nwant:\n%s", got, writtenDetail)
	}
	if got := dump(); got != written || written == "" {
		t.Fatalf("backfilled sums differ from the written ones:\n%s\nwant:\n%s", got, written)
	}
}
