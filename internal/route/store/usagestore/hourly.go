package usagestore

import (
	"cmp"
	"context"
	"fmt"
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
// them; a filter on several of provider, model and key uses the sums per
// hour, key, provider, model and target model (route_usage_hourly_detail,
// written with them); other filters (session, cursor, connection with
// another) read the records. Partial hours at either end of a period are
// read from the records, so the answer is exact for any Since and Until.
// The breakdown per provider, model or key (UsageGroups) reads the hours
// of one dimension grouped by value: provider and key hold a row for the
// empty value too, and client_model sums the records by their model
// column alone.

const hourMS = int64(time.Hour / time.Millisecond)

// Dimensions of the hourly sums.
const (
	dimAll        = ""
	dimProvider   = "provider"
	dimModel      = "model"
	dimKey        = "key"
	dimConnection = "connection"
	// dimClientModel sums the records by the model the client named,
	// the breakdown's "model" (dimModel is the model filter's, which
	// counts a record under three names).
	dimClientModel = "client_model"
	// dimModality sums the records by modality ('' for chat), dimUnit
	// those that used a unit by unit.
	dimModality = "modality"
	dimUnit     = "unit"
)

// ModalityChat is the modality filter's name of the records of no
// modality beyond chat (chat, embeddings, token counts), whose column
// holds ”.
const ModalityChat = "chat"

// modalityValue is the modality column's value f selects.
func (f UsageFilter) modalityValue() string {
	if f.Modality == ModalityChat {
		return ""
	}
	return f.Modality
}

type hourlyKey struct {
	dim, val string
	hour     int64
}

// hourlySum is one row of route_usage_hourly; latency is a sum.
type hourlySum struct {
	requests, errors, input, output, cacheRead, cacheWrite, reasoning, latency, quantity int64
	cost                                                                                 float64
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
	h.quantity += sign * r.Quantity
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

// detailKey is one row of route_usage_hourly_detail: an hour and the
// columns the usage page filters and groups by.
type detailKey struct {
	hour                                              int64
	key, provider, model, targetModel, modality, unit string
}

// rollups are sums of records per hour: per dimension
// (route_usage_hourly) and per provider, model, target model and key
// (route_usage_hourly_detail).
type rollups struct {
	dims   map[hourlyKey]*hourlySum
	detail map[detailKey]*hourlySum
}

// hourlySums sums recs per hour, dimension and detail; sign -1 subtracts
// them.
func hourlySums(recs []UsageRecord, sign int64) rollups {
	out := rollups{dims: map[hourlyKey]*hourlySum{}, detail: map[detailKey]*hourlySum{}}
	add := func(dim, val string, hour int64, r *UsageRecord) {
		k := hourlyKey{dim, val, hour}
		h := out.dims[k]
		if h == nil {
			h = &hourlySum{}
			out.dims[k] = h
		}
		h.add(r, sign)
	}
	for i := range recs {
		r := &recs[i]
		hour := floorHour(ms(r.At))
		add(dimAll, "", hour, r)
		add(dimProvider, r.Provider, hour, r) // '' too: the breakdown's refusals
		add(dimKey, r.KeyID, hour, r)         // '' too: calls without a key
		add(dimClientModel, r.Model, hour, r)
		add(dimModality, r.Modality, hour, r) // '' too: chat
		if r.Unit != "" {
			add(dimUnit, r.Unit, hour, r)
		}
		if r.Connection != "" {
			add(dimConnection, r.Connection, hour, r)
		}
		for _, m := range modelValues(r) {
			add(dimModel, m, hour, r)
		}
		dk := detailKey{hour, r.KeyID, r.Provider, r.Model, r.TargetModel, r.Modality, r.Unit}
		h := out.detail[dk]
		if h == nil {
			h = &hourlySum{}
			out.detail[dk] = h
		}
		h.add(r, sign)
	}
	return out
}

// hourlyRowsPerUpsert bounds one upsert: 14 columns × 1000 rows stays
// under both dialects' placeholder limits.
const hourlyRowsPerUpsert = 1000

// sumRow is one row to add to a table of sums: its key columns' values
// and the sums.
type sumRow struct {
	key []any
	s   *hourlySum
}

// addHourly adds sums to route_usage_hourly and route_usage_hourly_detail
// and, when some were subtracted, drops the rows left with no request.
func addHourly(ctx context.Context, tx *sqldb.Tx, sums rollups) error {
	dims := make([]sumRow, 0, len(sums.dims))
	subtracted := false
	for k, s := range sums.dims {
		dims = append(dims, sumRow{[]any{k.dim, k.val, k.hour}, s})
		subtracted = subtracted || s.requests < 0
	}
	// One order for every writer: concurrent upserts of the same rows
	// (several gateways on one PostgreSQL) then wait for each other
	// instead of deadlocking.
	slices.SortFunc(dims, func(a, b sumRow) int {
		return cmp.Or(strings.Compare(a.key[0].(string), b.key[0].(string)), strings.Compare(a.key[1].(string), b.key[1].(string)),
			cmp.Compare(a.key[2].(int64), b.key[2].(int64)))
	})
	if err := upsertSums(ctx, tx, "route_usage_hourly", []string{"dim", "val", "hour"}, dims); err != nil {
		return err
	}
	keys := make([]detailKey, 0, len(sums.detail))
	for k := range sums.detail {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b detailKey) int {
		return cmp.Or(cmp.Compare(a.hour, b.hour), strings.Compare(a.key, b.key), strings.Compare(a.provider, b.provider),
			strings.Compare(a.model, b.model), strings.Compare(a.targetModel, b.targetModel), strings.Compare(a.modality, b.modality),
			strings.Compare(a.unit, b.unit))
	})
	detail := make([]sumRow, len(keys))
	for i, k := range keys {
		detail[i] = sumRow{[]any{k.hour, k.key, k.provider, k.model, k.targetModel, k.modality, k.unit}, sums.detail[k]}
	}
	if err := upsertSums(ctx, tx, "route_usage_hourly_detail", []string{"hour", "key_id", "provider", "model", "target_model", "modality", "unit"}, detail); err != nil {
		return err
	}
	if subtracted {
		if _, err := tx.Exec(ctx, `DELETE FROM route_usage_hourly WHERE requests <= 0`); err != nil {
			return err
		}
		// The detail's key starts with the hour: only the hours touched.
		if _, err := tx.Exec(ctx, `DELETE FROM route_usage_hourly_detail WHERE hour >= ? AND hour <= ? AND requests <= 0`,
			keys[0].hour, keys[len(keys)-1].hour); err != nil {
			return err
		}
	}
	return nil
}

// upsertSums adds rows to table, whose primary key is keyCols, in
// statements of at most hourlyRowsPerUpsert rows.
func upsertSums(ctx context.Context, tx *sqldb.Tx, table string, keyCols []string, rows []sumRow) error {
	sumCols := []string{"requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
		"reasoning_tokens", "cost_usd", "latency_ms", "quantity"}
	cols := append(slices.Clone(keyCols), sumCols...)
	marks := "(" + strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",") + ")"
	var set strings.Builder
	for i, c := range sumCols {
		if i > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = %s.%s + excluded.%s", c, table, c, c)
	}
	for len(rows) > 0 {
		n := min(len(rows), hourlyRowsPerUpsert)
		var b strings.Builder
		b.WriteString(`INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES `)
		args := make([]any, 0, n*len(cols))
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(marks)
			s := r.s
			args = append(args, r.key...)
			args = append(args, s.requests, s.errors, s.input, s.output, s.cacheRead, s.cacheWrite, s.reasoning, s.cost, s.latency, s.quantity)
		}
		b.WriteString(` ON CONFLICT (` + strings.Join(keyCols, ", ") + `) DO UPDATE SET ` + set.String())
		if _, err := tx.Exec(ctx, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
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
	if f.Modality != "" { // chat's value is ''
		n++
		dim, val = dimModality, f.modalityValue()
	}
	return dim, val, n <= 1
}

// detailOK reports whether route_usage_hourly_detail answers f: it
// filters on nothing but provider, model and key (and the period).
func (f UsageFilter) detailOK() bool {
	return f.Session == "" && f.Before == 0 && f.Connection == ""
}

// rolledUp reports whether f's whole hours can be read from sums.
func (f UsageFilter) rolledUp() bool {
	_, _, ok := f.hourlyDim()
	return ok || f.detailOK()
}

// detailWhere is the WHERE of route_usage_hourly_detail's rows of f in
// the hours [from, to) (to 0: no end): its columns are named as those of
// route_usage, so f's conditions are the records'.
//
// Of several filters, the most selective column's index serves the read
// (a key, then a model, then a provider): the others are written as
// expressions no index serves, since SQLite, which keeps no statistics
// here, would as soon walk a provider's many rows as a key's few.
func detailWhere(f UsageFilter, from, to int64) (string, []any) {
	f.Since, f.Until = time.Time{}, time.Time{}
	where, args := f.whereCols("at", func(c string) string {
		if (f.KeyID != "" && c != "key_id") || (f.Model != "" && c == "provider") {
			return c + " || ''"
		}
		return c
	})
	if where == "" {
		where = " WHERE "
	} else {
		where += " AND "
	}
	where += "hour >= ?"
	args = append(args, from)
	if to != 0 {
		where += " AND hour < ?"
		args = append(args, to)
	}
	return where, args
}

// usageSpan is part of a filter's period: either read from the records
// (f itself, with its Since and Until narrowed) or from the hourly sums
// [from, to) (to 0: no end).
type usageSpan struct {
	f        UsageFilter
	hourly   bool
	partial  bool // a partial hour at an end of the period, read from the records
	from, to int64
}

// recordsWhere is the WHERE of the records of a span read from them: a
// partial hour's through the time index alone.
func (sp usageSpan) recordsWhere() (string, []any) {
	if sp.partial {
		return sp.f.whereByTime()
	}
	return sp.f.where()
}

// usageSpans splits f's period into record reads of the partial hours at
// its ends and one hourly read of the whole hours between them; a filter
// the hourly sums cannot answer is one record read.
func usageSpans(f UsageFilter) []usageSpan {
	if !f.rolledUp() {
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
			return []usageSpan{{f: f, partial: true}} // no whole hour
		}
	}
	var out []usageSpan
	if hasLo && ms(f.Since) < lo {
		head := f
		head.Until = fromMS(lo)
		out = append(out, usageSpan{f: head, partial: true})
	}
	out = append(out, usageSpan{f: f, hourly: true, from: lo, to: hi})
	if hasHi && hi < ms(f.Until) {
		tail := f
		tail.Since = fromMS(hi)
		out = append(out, usageSpan{f: tail, partial: true})
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

// hourlySumColumns sum rows of route_usage_hourly; they are those of
// sumColumns.
const hourlySumColumns = `COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), COALESCE(SUM(input_tokens), 0),
	COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0),
	COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(latency_ms), 0), COALESCE(SUM(quantity), 0)`

// hourlyQuery is the SELECT of sums for span sp of f, grouped by bucket
// of width w milliseconds (a multiple of an hour) when w > 0: from
// route_usage_hourly when one dimension answers f, else from
// route_usage_hourly_detail. Its columns are those of sumColumns.
func hourlyQuery(f UsageFilter, sp usageSpan, w int64) (string, []any) {
	table, cols := "route_usage_hourly", hourlySumColumns
	var where string
	var args []any
	if dim, val, ok := f.hourlyDim(); ok {
		where = ` WHERE dim = ? AND val = ? AND hour >= ?`
		args = []any{dim, val, sp.from}
		if sp.to != 0 {
			where += ` AND hour < ?`
			args = append(args, sp.to)
		}
	} else {
		table = "route_usage_hourly_detail"
		where, args = detailWhere(f, sp.from, sp.to)
	}
	if w <= 0 {
		return `SELECT ` + cols + ` FROM ` + table + where, args
	}
	return `SELECT hour / ? AS b, ` + cols + ` FROM ` + table + where + ` GROUP BY 1 ORDER BY 1`,
		append([]any{w}, args...)
}
