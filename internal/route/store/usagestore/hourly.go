package usagestore

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// The hourly sums (route_usage_hourly) answer the usage totals and
// buckets of whole hours: a 30-day history reads about 720 rows instead
// of every record. They are written in the transaction that inserts or
// deletes the records they sum, so they always agree with route_usage.
// A filter on at most one of provider, model, key or connection uses
// them; other filters (session, cursor, several dimensions) read the
// records. Partial hours at either end of a period are read from the
// records, so the answer is exact for any Since and Until.

const hourMS = int64(time.Hour / time.Millisecond)

// Dimensions of the hourly sums.
const (
	dimAll        = ""
	dimProvider   = "provider"
	dimModel      = "model"
	dimKey        = "key"
	dimConnection = "connection"
)

type hourlyKey struct {
	dim, val string
	hour     int64
}

// hourlySum is one row of route_usage_hourly; latency is a sum.
type hourlySum struct {
	requests, errors, input, output, cacheRead, cacheWrite, reasoning, latency int64
	cost                                                                       float64
}

func (h *hourlySum) add(r *UsageRecord, sign int64) {
	h.requests += sign
	if r.Status >= 400 {
		h.errors += sign
	}
	h.input += sign * r.InputTokens
	h.output += sign * r.OutputTokens
	h.cacheRead += sign * r.CacheReadTokens
	h.cacheWrite += sign * r.CacheWriteTokens
	h.reasoning += sign * r.ReasoningTokens
	h.latency += sign * r.LatencyMS
	h.cost += float64(sign) * r.CostUSD
}

// modelValues are the distinct values a model filter matches a record by
// (see UsageFilter.where), leaving out the empty one.
func modelValues(r *UsageRecord) []string {
	out := make([]string, 0, 3)
	if r.Model != "" {
		out = append(out, r.Model)
	}
	if r.TargetModel != "" && r.TargetModel != r.Model {
		out = append(out, r.TargetModel)
	}
	if pt := r.Provider + "/" + r.TargetModel; pt != r.Model && pt != r.TargetModel {
		out = append(out, pt)
	}
	return out
}

// hourlySums sums recs per hour and dimension; sign -1 subtracts them.
func hourlySums(recs []UsageRecord, sign int64) map[hourlyKey]*hourlySum {
	out := map[hourlyKey]*hourlySum{}
	add := func(dim, val string, hour int64, r *UsageRecord) {
		k := hourlyKey{dim, val, hour}
		h := out[k]
		if h == nil {
			h = &hourlySum{}
			out[k] = h
		}
		h.add(r, sign)
	}
	for i := range recs {
		r := &recs[i]
		at := ms(r.At)
		hour := at - at%hourMS
		if at < 0 && at%hourMS != 0 {
			hour -= hourMS
		}
		add(dimAll, "", hour, r)
		if r.Provider != "" {
			add(dimProvider, r.Provider, hour, r)
		}
		if r.KeyID != "" {
			add(dimKey, r.KeyID, hour, r)
		}
		if r.Connection != "" {
			add(dimConnection, r.Connection, hour, r)
		}
		for _, m := range modelValues(r) {
			add(dimModel, m, hour, r)
		}
	}
	return out
}

// hourlyRowsPerUpsert bounds one upsert: 12 columns × 1000 rows stays
// under both dialects' placeholder limits.
const hourlyRowsPerUpsert = 1000

// addHourly adds sums to route_usage_hourly and, when some were
// subtracted, drops the rows left with no request.
func addHourly(ctx context.Context, tx *sqldb.Tx, sums map[hourlyKey]*hourlySum) error {
	if len(sums) == 0 {
		return nil
	}
	type row struct {
		k hourlyKey
		s *hourlySum
	}
	rows := make([]row, 0, len(sums))
	subtracted := false
	for k, s := range sums {
		rows = append(rows, row{k, s})
		subtracted = subtracted || s.requests < 0
	}
	// One order for every writer: concurrent upserts of the same rows
	// (several gateways on one PostgreSQL) then wait for each other
	// instead of deadlocking.
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(strings.Compare(a.k.dim, b.k.dim), strings.Compare(a.k.val, b.k.val), cmp.Compare(a.k.hour, b.k.hour))
	})
	for len(rows) > 0 {
		n := min(len(rows), hourlyRowsPerUpsert)
		var b strings.Builder
		b.WriteString(`INSERT INTO route_usage_hourly (dim, val, hour, requests, errors, input_tokens, output_tokens,
			cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms) VALUES `)
		args := make([]any, 0, n*12)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
			s := r.s
			args = append(args, r.k.dim, r.k.val, r.k.hour, s.requests, s.errors, s.input, s.output, s.cacheRead,
				s.cacheWrite, s.reasoning, s.cost, s.latency)
		}
		b.WriteString(` ON CONFLICT (dim, val, hour) DO UPDATE SET
			requests = route_usage_hourly.requests + excluded.requests,
			errors = route_usage_hourly.errors + excluded.errors,
			input_tokens = route_usage_hourly.input_tokens + excluded.input_tokens,
			output_tokens = route_usage_hourly.output_tokens + excluded.output_tokens,
			cache_read_tokens = route_usage_hourly.cache_read_tokens + excluded.cache_read_tokens,
			cache_write_tokens = route_usage_hourly.cache_write_tokens + excluded.cache_write_tokens,
			reasoning_tokens = route_usage_hourly.reasoning_tokens + excluded.reasoning_tokens,
			cost_usd = route_usage_hourly.cost_usd + excluded.cost_usd,
			latency_ms = route_usage_hourly.latency_ms + excluded.latency_ms`)
		if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	if subtracted {
		if _, err := tx.Exec(ctx, `DELETE FROM route_usage_hourly WHERE requests <= 0`); err != nil {
			return err
		}
	}
	return nil
}

// hourlyDim is the dimension of route_usage_hourly that answers f, or
// ok false when f needs the records themselves.
func (f UsageFilter) hourlyDim() (dim, val string, ok bool) {
	if f.Session != "" || f.Before != 0 {
		return "", "", false
	}
	n := 0
	for _, d := range []struct{ dim, val string }{
		{dimProvider, f.Provider}, {dimModel, f.Model}, {dimKey, f.KeyID}, {dimConnection, f.Connection},
	} {
		if d.val != "" {
			n++
			dim, val = d.dim, d.val
		}
	}
	return dim, val, n <= 1
}

// usageSpan is part of a filter's period: either read from the records
// (f itself, with its Since and Until narrowed) or from the hourly sums
// [from, to) (to 0: no end).
type usageSpan struct {
	f        UsageFilter
	hourly   bool
	from, to int64
}

// usageSpans splits f's period into record reads of the partial hours at
// its ends and one hourly read of the whole hours between them; a filter
// the hourly sums cannot answer is one record read.
func usageSpans(f UsageFilter) []usageSpan {
	if _, _, ok := f.hourlyDim(); !ok {
		return []usageSpan{{f: f}}
	}
	var lo, hi int64 // whole hours [lo, hi); hi 0: no end
	hasLo, hasHi := !f.Since.IsZero(), !f.Until.IsZero()
	if hasLo {
		lo = ceilHour(ms(f.Since))
	} else {
		lo = -1 << 62
	}
	if hasHi {
		hi = floorHour(ms(f.Until))
		if hi <= lo {
			return []usageSpan{{f: f}}
		}
	}
	var out []usageSpan
	if hasLo && ms(f.Since) < lo {
		head := f
		head.Until = fromMS(lo)
		out = append(out, usageSpan{f: head})
	}
	out = append(out, usageSpan{f: f, hourly: true, from: lo, to: hi})
	if hasHi && hi < ms(f.Until) {
		tail := f
		tail.Since = fromMS(hi)
		out = append(out, usageSpan{f: tail})
	}
	return out
}

func floorHour(v int64) int64 {
	h := v - v%hourMS
	if v < 0 && v%hourMS != 0 {
		h -= hourMS
	}
	return h
}

func ceilHour(v int64) int64 {
	h := floorHour(v)
	if h < v {
		h += hourMS
	}
	return h
}

// hourlyQuery is the SELECT of sums from route_usage_hourly for span sp
// of f, grouped by bucket of width w milliseconds (a multiple of an hour)
// when w > 0; its columns are those of usageSumColumns.
func hourlyQuery(f UsageFilter, sp usageSpan, w int64) (string, []any) {
	dim, val, _ := f.hourlyDim()
	where := ` WHERE dim = ? AND val = ? AND hour >= ?`
	args := []any{dim, val, sp.from}
	if sp.to != 0 {
		where += ` AND hour < ?`
		args = append(args, sp.to)
	}
	cols := `COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), COALESCE(SUM(input_tokens), 0),
		COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0),
		COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(latency_ms), 0)`
	if w <= 0 {
		return `SELECT ` + cols + ` FROM route_usage_hourly` + where, args
	}
	return `SELECT hour / ? AS b, ` + cols + ` FROM route_usage_hourly` + where + ` GROUP BY 1 ORDER BY 1`,
		append([]any{w}, args...)
}
