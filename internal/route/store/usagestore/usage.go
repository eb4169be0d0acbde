package usagestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// UsageRecord is one routed request as recorded by route/usage.
type UsageRecord struct {
	ID               int64     `json:"id"`
	At               time.Time `json:"time"`
	KeyID            string    `json:"apiKeyId"`
	Endpoint         string    `json:"endpoint"`
	Model            string    `json:"model"`
	Provider         string    `json:"provider"`
	Connection       string    `json:"connectionId"`
	TargetModel      string    `json:"targetModel"`
	InputTokens      int64     `json:"inputTokens"`
	OutputTokens     int64     `json:"outputTokens"`
	CacheReadTokens  int64     `json:"cacheReadTokens"`
	CacheWriteTokens int64     `json:"cacheWriteTokens"`
	ReasoningTokens  int64     `json:"reasoningTokens"`
	Estimated        bool      `json:"estimated"`
	CostUSD          float64   `json:"costUsd"`
	LatencyMS        int64     `json:"latencyMs"`
	TTFTMS           int64     `json:"ttftMs"`
	Status           int       `json:"status"`
	ErrorType        string    `json:"errorType,omitempty"`
	ErrorMessage     string    `json:"errorMessage,omitempty"`
	Attempts         int       `json:"attempts"`
	AttemptsJSON     string    `json:"-"`
	Cache            string    `json:"cache,omitempty"`
	Idempotent       bool      `json:"idempotent"`
	Stream           bool      `json:"stream"`
	Session          string    `json:"sessionId,omitempty"`
	// Modality, Unit and Quantity describe a call of a modality beyond
	// chat (rerank, moderation …): what it did and how much of its own
	// unit it used (documents, inputs …); "" and 0 for chat.
	Modality string `json:"modality,omitempty"`
	Unit     string `json:"unit,omitempty"`
	Quantity int64  `json:"quantity,omitempty"`
}

// UsageFilter selects usage records; zero fields select everything.
type UsageFilter struct {
	Since, Until time.Time // at >= Since, at < Until
	Model        string    // the model as the client named it, or the target model
	Provider     string
	KeyID        string
	Connection   string
	Session      string
	Modality     string // the modality ("" is no filter; "chat" selects chat, embeddings and token counts)
	Before       int64  // id < Before (cursor), 0: no cursor
}

func (f UsageFilter) where() (string, []any) { return f.whereAt("at") }

// whereAt is where with the time column written as at; "+at" keeps
// SQLite from choosing an index on at (it stays a plain comparison).
func (f UsageFilter) whereAt(at string) (string, []any) {
	return f.whereCols(at, func(c string) string { return c })
}

// whereByTime is where for a short period (a partial hour): the other
// columns are written concatenated with an empty string, which no index serves,
// so the time index finds the period's few records instead of an index
// on a filtered column walking all of its records.
func (f UsageFilter) whereByTime() (string, []any) {
	return f.whereCols("at", func(c string) string { return c + " || ''" })
}

// whereCols builds the WHERE of f, writing the time column as at and
// the others through col.
func (f UsageFilter) whereCols(at string, col func(string) string) (string, []any) {
	var conds []string
	var args []any
	add := func(c string, a ...any) { conds = append(conds, c); args = append(args, a...) }
	if !f.Since.IsZero() {
		add(at+" >= ?", ms(f.Since))
	}
	if !f.Until.IsZero() {
		add(at+" < ?", ms(f.Until))
	}
	if f.Model != "" {
		add("("+col("model")+" = ? OR "+col("target_model")+" = ? OR "+col("provider || '/' || target_model")+" = ?)", f.Model, f.Model, f.Model)
	}
	if f.Provider != "" {
		add(col("provider")+" = ?", f.Provider)
	}
	if f.KeyID != "" {
		add(col("key_id")+" = ?", f.KeyID)
	}
	if f.Connection != "" {
		add(col("connection")+" = ?", f.Connection)
	}
	if f.Session != "" {
		add(col("session")+" = ?", f.Session)
	}
	if f.Modality != "" {
		add(col("modality")+" = ?", f.modalityValue())
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

const usageColumns = `at, key_id, endpoint, model, provider, connection, target_model, input_tokens, output_tokens,
	cache_read_tokens, cache_write_tokens, reasoning_tokens, estimated, cost_usd, latency_ms, ttft_ms, status,
	error_type, error_message, attempts, attempts_json, cache, idempotent, stream, session, modality, unit, quantity`

// usageRowsPerInsert bounds the rows of one INSERT: 28 columns × 1000 rows
// stays under SQLite's (32766) and PostgreSQL's (65535) placeholder
// limits, and holds a whole batch of the usage writer (500).
const usageRowsPerInsert = 1000

// InsertUsage writes records and adds them to the hourly sums
// (route_usage_hourly), in one transaction: several multi-row INSERTs of
// at most usageRowsPerInsert records, then one upsert of the sums.
func (s *Table) InsertUsage(ctx context.Context, recs []UsageRecord) error {
	if len(recs) == 0 {
		return nil
	}
	sums := hourlySums(recs, 1)
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for len(recs) > 0 {
			n := min(len(recs), usageRowsPerInsert)
			q, args := insertUsage(recs[:n])
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return err
			}
			recs = recs[n:]
		}
		return addHourly(ctx, tx, sums)
	})
}

// usageCol is one inserted column of route_usage: a record's value, and
// whether that value is the column's DEFAULT (nil: always written).
type usageCol struct {
	name  string
	value func(*UsageRecord) any
	dflt  func(*UsageRecord) bool
}

func textCol(name string, f func(*UsageRecord) string) usageCol {
	return usageCol{name, func(r *UsageRecord) any { return f(r) }, func(r *UsageRecord) bool { return f(r) == "" }}
}

func intCol(name string, f func(*UsageRecord) int64) usageCol {
	return usageCol{name, func(r *UsageRecord) any { return f(r) }, func(r *UsageRecord) bool { return f(r) == 0 }}
}

func boolCol(name string, f func(*UsageRecord) bool) usageCol {
	return usageCol{name, func(r *UsageRecord) any { return f(r) }, func(r *UsageRecord) bool { return !f(r) }}
}

// usageCols are the columns of usageColumns. Their DEFAULTs (both
// dialects' migrations) are the zero values, and '[]' for attempts_json.
var usageCols = []usageCol{
	{"at", func(r *UsageRecord) any { return ms(r.At) }, nil},
	textCol("key_id", func(r *UsageRecord) string { return r.KeyID }),
	textCol("endpoint", func(r *UsageRecord) string { return r.Endpoint }),
	textCol("model", func(r *UsageRecord) string { return r.Model }),
	textCol("provider", func(r *UsageRecord) string { return r.Provider }),
	textCol("connection", func(r *UsageRecord) string { return r.Connection }),
	textCol("target_model", func(r *UsageRecord) string { return r.TargetModel }),
	intCol("input_tokens", func(r *UsageRecord) int64 { return r.InputTokens }),
	intCol("output_tokens", func(r *UsageRecord) int64 { return r.OutputTokens }),
	intCol("cache_read_tokens", func(r *UsageRecord) int64 { return r.CacheReadTokens }),
	intCol("cache_write_tokens", func(r *UsageRecord) int64 { return r.CacheWriteTokens }),
	intCol("reasoning_tokens", func(r *UsageRecord) int64 { return r.ReasoningTokens }),
	boolCol("estimated", func(r *UsageRecord) bool { return r.Estimated }),
	{"cost_usd", func(r *UsageRecord) any { return r.CostUSD }, func(r *UsageRecord) bool { return r.CostUSD == 0 }},
	intCol("latency_ms", func(r *UsageRecord) int64 { return r.LatencyMS }),
	intCol("ttft_ms", func(r *UsageRecord) int64 { return r.TTFTMS }),
	intCol("status", func(r *UsageRecord) int64 { return int64(r.Status) }),
	textCol("error_type", func(r *UsageRecord) string { return r.ErrorType }),
	textCol("error_message", func(r *UsageRecord) string { return r.ErrorMessage }),
	intCol("attempts", func(r *UsageRecord) int64 { return int64(r.Attempts) }),
	{"attempts_json", func(r *UsageRecord) any {
		if r.AttemptsJSON == "" {
			return "[]"
		}
		return r.AttemptsJSON
	}, func(r *UsageRecord) bool { return r.AttemptsJSON == "" || r.AttemptsJSON == "[]" }},
	textCol("cache", func(r *UsageRecord) string { return r.Cache }),
	boolCol("idempotent", func(r *UsageRecord) bool { return r.Idempotent }),
	boolCol("stream", func(r *UsageRecord) bool { return r.Stream }),
	textCol("session", func(r *UsageRecord) string { return r.Session }),
	textCol("modality", func(r *UsageRecord) string { return r.Modality }),
	textCol("unit", func(r *UsageRecord) string { return r.Unit }),
	intCol("quantity", func(r *UsageRecord) int64 { return r.Quantity }),
}

// insertUsage is the INSERT of recs, with its arguments. A column that
// holds its DEFAULT in every record is left out (most rows carry no
// cache, reasoning, error or session fields): the rows are the same, and
// SQLite parses and binds a third fewer placeholders, which is most of
// the cost of a batch.
func insertUsage(recs []UsageRecord) (string, []any) {
	cols := make([]*usageCol, 0, len(usageCols))
	for i := range usageCols {
		c := &usageCols[i]
		if c.dflt == nil {
			cols = append(cols, c)
			continue
		}
		for k := range recs {
			if !c.dflt(&recs[k]) {
				cols = append(cols, c)
				break
			}
		}
	}
	var b strings.Builder
	b.Grow(64 + len(cols)*20 + len(recs)*(2*len(cols)+2))
	b.WriteString("INSERT INTO route_usage (")
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.name)
	}
	b.WriteString(") VALUES ")
	args := make([]any, 0, len(recs)*len(cols))
	for k := range recs {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for i, c := range cols {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('?')
			args = append(args, c.value(&recs[k]))
		}
		b.WriteByte(')')
	}
	return b.String(), args
}

// UsageLogs returns records matching f, newest first. A filter on key,
// provider or connection walks that column's (column, id) index newest
// first and checks the period on the way ("+at"): an index on the time
// would find every record of the period and sort them all by id. A
// model filter matches three columns (model, target model,
// provider/target model), each with its (column, id) index: the page is
// the union of the three walks, each stopping after limit+offset
// matches.
func (s *Table) UsageLogs(ctx context.Context, f UsageFilter, limit, offset int) ([]UsageRecord, error) {
	at := "at"
	if f.KeyID != "" || f.Provider != "" || f.Connection != "" || f.Model != "" {
		at = "+at"
	}
	if f.Model != "" {
		// A model with no record in the period would walk all of its
		// older ones; the hourly sums say whether there is one.
		var n int
		cq := `SELECT COUNT(*) FROM route_usage_hourly WHERE dim = ? AND val = ?`
		cargs := []any{dimModel, f.Model}
		if !f.Since.IsZero() {
			cq += ` AND hour >= ?`
			cargs = append(cargs, floorHour(ms(f.Since)))
		}
		if err := s.db.QueryRow(ctx, cq, cargs...).Scan(&n); err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
	}
	var q string
	var args []any
	if f.Model == "" {
		var where string
		where, args = f.whereAt(at)
		q = `SELECT id, ` + usageColumns + ` FROM route_usage` + where + ` ORDER BY id DESC LIMIT ? OFFSET ?`
	} else {
		rest := f
		rest.Model = ""
		where, rargs := rest.whereAt(at)
		and := " WHERE "
		if where != "" {
			and = where + " AND "
		}
		var branches []string
		for i, col := range []string{"model", "target_model", "provider || '/' || target_model"} {
			branches = append(branches, fmt.Sprintf(`SELECT id FROM (SELECT id FROM route_usage%s%s = ? ORDER BY id DESC LIMIT ?) m%d`, and, col, i))
			args = append(args, rargs...)
			args = append(args, f.Model, limit+offset)
		}
		q = `SELECT id, ` + usageColumns + ` FROM route_usage WHERE id IN (` + strings.Join(branches, " UNION ") +
			`) ORDER BY id DESC LIMIT ? OFFSET ?`
	}
	args = append(args, limit, offset)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(sc scanner) (UsageRecord, error) {
		var r UsageRecord
		var at int64
		err := sc.Scan(&r.ID, &at, &r.KeyID, &r.Endpoint, &r.Model, &r.Provider, &r.Connection, &r.TargetModel,
			&r.InputTokens, &r.OutputTokens, &r.CacheReadTokens, &r.CacheWriteTokens, &r.ReasoningTokens, &r.Estimated,
			&r.CostUSD, &r.LatencyMS, &r.TTFTMS, &r.Status, &r.ErrorType, &r.ErrorMessage, &r.Attempts, &r.AttemptsJSON,
			&r.Cache, &r.Idempotent, &r.Stream, &r.Session, &r.Modality, &r.Unit, &r.Quantity)
		r.At = fromMS(at)
		return r, err
	})
}

// UsageLastAt is the time of the newest record matching f; ok is false
// when none does. MAX(at) over an index that starts with the filtered
// column (connection, session) reads one index entry.
func (s *Table) UsageLastAt(ctx context.Context, f UsageFilter) (time.Time, bool, error) {
	where, args := f.where()
	var at sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT MAX(at) FROM route_usage`+where, args...).Scan(&at); err != nil {
		return time.Time{}, false, err
	}
	return fromMS(at.Int64), at.Valid, nil
}

// UsageTotals sums usage records.
type UsageTotals struct {
	Requests         int64   `json:"requests"`
	Errors           int64   `json:"errors"`
	InputTokens      int64   `json:"inputTokens"`
	OutputTokens     int64   `json:"outputTokens"`
	CacheReadTokens  int64   `json:"cacheReadTokens"`
	CacheWriteTokens int64   `json:"cacheWriteTokens"`
	ReasoningTokens  int64   `json:"reasoningTokens"`
	TotalTokens      int64   `json:"totalTokens"`
	CostUSD          float64 `json:"costUsd"`
	AvgLatencyMS     float64 `json:"avgLatencyMs"`
	// Quantity sums the records' quantities in their own units
	// (documents, images, seconds …): meaningful where the records are
	// of one unit (the breakdown by unit).
	Quantity int64 `json:"quantity"`
}

// sumColumns sum records; scanSums reads them (latency as a sum).
const sumColumns = `COUNT(*), COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0),
	COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0),
	COALESCE(SUM(latency_ms), 0), COALESCE(SUM(quantity), 0)`

// usageSum is UsageTotals before the average latency is taken.
type usageSum struct {
	t       UsageTotals
	latency int64
}

func scanSums(sc scanner, extra ...any) (usageSum, error) {
	var s usageSum
	t := &s.t
	dst := append(extra, &t.Requests, &t.Errors, &t.InputTokens, &t.OutputTokens, &t.CacheReadTokens,
		&t.CacheWriteTokens, &t.ReasoningTokens, &t.CostUSD, &s.latency, &t.Quantity)
	return s, sc.Scan(dst...)
}

func (s *usageSum) add(o usageSum) {
	s.t.Requests += o.t.Requests
	s.t.Errors += o.t.Errors
	s.t.InputTokens += o.t.InputTokens
	s.t.OutputTokens += o.t.OutputTokens
	s.t.CacheReadTokens += o.t.CacheReadTokens
	s.t.CacheWriteTokens += o.t.CacheWriteTokens
	s.t.ReasoningTokens += o.t.ReasoningTokens
	s.t.CostUSD += o.t.CostUSD
	s.latency += o.latency
	s.t.Quantity += o.t.Quantity
}

func (s usageSum) totals() UsageTotals {
	t := s.t
	t.TotalTokens = t.InputTokens + t.OutputTokens + t.CacheReadTokens + t.CacheWriteTokens
	if t.Requests > 0 {
		t.AvgLatencyMS = float64(s.latency) / float64(t.Requests)
	}
	return t
}

// UsageTotals sums the records matching f (whole hours from the hourly
// sums, see usageSpans).
func (s *Table) UsageTotals(ctx context.Context, f UsageFilter) (UsageTotals, error) {
	var sum usageSum
	for _, sp := range usageSpans(f) {
		var q string
		var args []any
		if sp.hourly {
			q, args = hourlyQuery(f, sp, 0)
		} else {
			var where string
			where, args = sp.recordsWhere()
			q = `SELECT ` + sumColumns + ` FROM route_usage` + where
		}
		part, err := scanSums(s.db.QueryRow(ctx, q, args...))
		if err != nil {
			return UsageTotals{}, err
		}
		sum.add(part)
	}
	return sum.totals(), nil
}

// UsageBucket is the sum of one time bucket.
type UsageBucket struct {
	Start time.Time `json:"time"`
	UsageTotals
}

// UsageBuckets sums the records matching f per time bucket of width
// (aligned to the Unix epoch, so days are UTC days), oldest first; empty
// buckets are left out. Widths of whole hours read whole hours from the
// hourly sums.
func (s *Table) UsageBuckets(ctx context.Context, f UsageFilter, width time.Duration) ([]UsageBucket, error) {
	w := width.Milliseconds()
	if w <= 0 {
		return nil, errors.New("usage buckets: width must be positive")
	}
	spans := []usageSpan{{f: f}}
	if w%hourMS == 0 {
		spans = usageSpans(f)
	}
	by := map[int64]*usageSum{}
	var order []int64
	for _, sp := range spans {
		var q string
		var args []any
		if sp.hourly {
			q, args = hourlyQuery(f, sp, w)
		} else {
			var where string
			where, args = sp.recordsWhere()
			q = `SELECT at / ? AS b, ` + sumColumns + ` FROM route_usage` + where + ` GROUP BY 1 ORDER BY 1`
			args = append([]any{w}, args...)
		}
		rows, err := s.db.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		type part struct {
			b int64
			s usageSum
		}
		parts, err := sqldb.Collect(rows, func(sc scanner) (part, error) {
			var p part
			var err error
			p.s, err = scanSums(sc, &p.b)
			return p, err
		})
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			if p.s.t.Requests == 0 {
				continue
			}
			if cur := by[p.b]; cur != nil {
				cur.add(p.s)
				continue
			}
			v := p.s
			by[p.b] = &v
			order = append(order, p.b)
		}
	}
	slices.Sort(order)
	out := make([]UsageBucket, len(order))
	for i, b := range order {
		out[i] = UsageBucket{Start: fromMS(b * w), UsageTotals: by[b].totals()}
	}
	return out, nil
}

// UsageSample is the latency of one successful request of a provider.
type UsageSample struct {
	Provider  string
	LatencyMS int64
}

// UsageLatencies returns the latencies of successful, routed requests
// since a time, newest first, at most limit. Here and in
// UsageSessionRows, "+id" keeps SQLite from walking every record in id
// order to skip a sort: the records of the last minutes are few, and the
// at index finds them.
func (s *Table) UsageLatencies(ctx context.Context, since time.Time, limit int) ([]UsageSample, error) {
	rows, err := s.db.Query(ctx, `SELECT provider, latency_ms FROM route_usage
		WHERE at >= ? AND provider <> '' AND status < 400 AND cache <> 'HIT' AND idempotent = ?
		ORDER BY +id DESC LIMIT ?`, ms(since), false, limit)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(sc scanner) (UsageSample, error) {
		var v UsageSample
		return v, sc.Scan(&v.Provider, &v.LatencyMS)
	})
}

// UsageSessionRow is one request of a sticky session.
type UsageSessionRow struct {
	Session, KeyID, Provider, TargetModel string
	At                                    time.Time
}

// UsageSessionRows returns the requests carrying a session id since a
// time, oldest first, at most limit (the newest ones).
func (s *Table) UsageSessionRows(ctx context.Context, since time.Time, limit int) ([]UsageSessionRow, error) {
	rows, err := s.db.Query(ctx, `SELECT session, key_id, provider, target_model, at FROM route_usage
		WHERE at >= ? AND session <> '' ORDER BY +id DESC LIMIT ?`, ms(since), limit)
	if err != nil {
		return nil, err
	}
	out, err := sqldb.Collect(rows, func(sc scanner) (UsageSessionRow, error) {
		var v UsageSessionRow
		var at int64
		err := sc.Scan(&v.Session, &v.KeyID, &v.Provider, &v.TargetModel, &at)
		v.At = fromMS(at)
		return v, err
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// UsageProviders lists the providers that served requests since a time:
// those of the whole hours from the hourly sums, those of the partial
// hour before them from the records (a DISTINCT over the records would
// walk the provider index through every record).
func (s *Table) UsageProviders(ctx context.Context, since time.Time) ([]string, error) {
	from := ceilHour(ms(since))
	rows, err := s.db.Query(ctx, `SELECT val FROM route_usage_hourly WHERE dim = ? AND val <> '' AND hour >= ?
		UNION ALL SELECT provider FROM route_usage WHERE at >= ? AND at < ? AND provider <> ''`,
		dimProvider, from, ms(since), from)
	if err != nil {
		return nil, err
	}
	all, err := sqldb.Collect(rows, func(sc scanner) (string, error) {
		var p string
		return p, sc.Scan(&p)
	})
	slices.Sort(all)
	return slices.Compact(all), err
}

// DeleteUsageBefore deletes at most limit records older than before,
// subtracting them from the hourly sums in the same transaction, and
// reports how many went.
func (s *Table) DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int64, error) {
	var n int64
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, at, key_id, model, provider, connection, target_model, input_tokens,
			output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd, latency_ms, status, modality, unit, quantity
			FROM route_usage WHERE at < ? ORDER BY id LIMIT ?`, ms(before), limit)
		if err != nil {
			return err
		}
		recs, err := sqldb.Collect(rows, func(sc scanner) (UsageRecord, error) {
			var r UsageRecord
			var at int64
			err := sc.Scan(&r.ID, &at, &r.KeyID, &r.Model, &r.Provider, &r.Connection, &r.TargetModel, &r.InputTokens,
				&r.OutputTokens, &r.CacheReadTokens, &r.CacheWriteTokens, &r.ReasoningTokens, &r.CostUSD, &r.LatencyMS, &r.Status,
				&r.Modality, &r.Unit, &r.Quantity)
			r.At = fromMS(at)
			return r, err
		})
		if err != nil || len(recs) == 0 {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM route_usage WHERE at < ? AND id <= ?`, ms(before), recs[len(recs)-1].ID)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if n != int64(len(recs)) {
			return fmt.Errorf("usage: deleting %d records removed %d", len(recs), n)
		}
		return addHourly(ctx, tx, hourlySums(recs, -1))
	})
	return n, err
}

// UsageCount is the number of stored usage records.
func (s *Table) UsageCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM route_usage`).Scan(&n)
	return n, err
}

// CompactUsage gives the space of deleted records back to the file
// system. On SQLite it switches the database to incremental auto-vacuum
// the first time (which needs one full VACUUM), then releases free pages
// and truncates the write-ahead log; PostgreSQL's autovacuum needs no
// help. The SQLite database is shared with the other products, which is
// why this runs rarely (after a retention sweep that deleted something).
func (s *Table) CompactUsage(ctx context.Context) error {
	if s.db.Dialect != sqldb.SQLite {
		return nil
	}
	var mode int
	if err := s.db.QueryRow(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		return err
	}
	if mode != 2 { // 2 = incremental
		if _, err := s.db.Exec(ctx, `PRAGMA auto_vacuum = INCREMENTAL`); err != nil {
			return err
		}
		if _, err := s.db.Exec(ctx, `VACUUM`); err != nil {
			return err
		}
	} else if _, err := s.db.Exec(ctx, `PRAGMA incremental_vacuum`); err != nil {
		return err
	}
	_, err := s.db.Exec(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}
