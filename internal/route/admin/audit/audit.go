// Package audit keeps the compliance audit log: every successful
// management change the guard (route/admin) records — who (actor kind,
// id, name, address), what (method, route, path, resource id), when, and
// the masked request body and before/after documents — appended to its
// own table (gateway_audit_log, product "route_audit"), served read-only
// under GET /api/compliance/audit-log, and bounded by a retention sweep
// (a maximum age and a row cap).
package audit

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/feature"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the log's schema (product Product), one directory per
// dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_audit"

// Defaults of Options.
const (
	DefaultMaxAge  = 365 * 24 * time.Hour
	DefaultMaxRows = 100_000
	// SweepEvery is how often the retention sweep runs.
	SweepEvery = 10 * time.Minute
)

// Paging of GET /api/compliance/audit-log.
const (
	DefaultLimit = 100
	MaxLimit     = 500
)

// Options configure the log.
type Options struct {
	DB *sqldb.DB // required
	// MaxAge and MaxRows bound the log: older rows, and the oldest rows
	// beyond MaxRows, are deleted by the sweep (defaults DefaultMaxAge,
	// DefaultMaxRows).
	MaxAge  time.Duration
	MaxRows int
	Clock   clock.Clock
	Log     *slog.Logger
}

// Log is the audit log: admin.Recorder for the guard, and its endpoint.
type Log struct {
	opt Options
	db  *sqldb.DB
	clk clock.Clock
	log *slog.Logger
}

// New returns the log over opt.DB, whose schema Migrations holds.
func New(opt Options) *Log {
	if opt.MaxAge <= 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.MaxRows <= 0 {
		opt.MaxRows = DefaultMaxRows
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Log{opt: opt, db: opt.DB, clk: opt.Clock, log: opt.Log}
}

// Module is the audit log as a gateway module: its schema, its read-only
// endpoint and its retention sweep.
func (l *Log) Module(g *admin.Guard) feature.Module {
	return feature.Module{
		Name:       "audit",
		Package:    "route/admin/audit",
		Routes:     func(mux feature.Mux) { l.Register(mux, g) },
		Migrations: feature.Migrations{Product: Product, FS: Migrations()},
		Settings:   feature.Settings{Config: []string{"route.audit_max_age", "route.audit_max_rows"}},
		Run:        l.Run,
	}
}

// Register adds GET /api/compliance/audit-log to mux behind g (the
// dashboard login or a management key). Nothing writes the log over HTTP.
func (l *Log) Register(mux admin.Mux, g *admin.Guard) {
	g.Guarded(mux)("GET /api/compliance/audit-log", l.list)
}

func nullDoc(d json.RawMessage) any {
	if len(d) == 0 {
		return nil
	}
	return string(d)
}

// Record appends one change (admin.Recorder).
func (l *Log) Record(ctx context.Context, e admin.AuditEntry) error {
	at := e.At
	if at.IsZero() {
		at = l.clk.Now()
	}
	_, err := l.db.Exec(ctx, `INSERT INTO gateway_audit_log (at, actor_kind, actor_id, actor_name, addr, method, route, path,
		resource_id, status, request_doc, before_doc, after_doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		at.UnixMilli(), e.Actor.Kind, e.Actor.ID, e.Actor.Name, e.Actor.Addr, e.Method, clip(e.Route, 300), clip(e.Path, 2000),
		clip(e.ResourceID, 200), e.Status, nullDoc(e.Request), nullDoc(e.Before), nullDoc(e.After))
	return err
}

func clip(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// Run sweeps the log now and every SweepEvery until ctx ends.
func (l *Log) Run(ctx context.Context) error {
	tick := time.NewTicker(SweepEvery)
	defer tick.Stop()
	for {
		if n, err := l.Sweep(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("audit log: retention sweep failed", "err", err)
		} else if n > 0 {
			l.log.Info("audit log: retention sweep", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sweep deletes the rows older than MaxAge and the oldest beyond
// MaxRows, and returns how many it deleted.
func (l *Log) Sweep(ctx context.Context) (int64, error) {
	cut := l.clk.Now().Add(-l.opt.MaxAge).UnixMilli()
	res, err := l.db.Exec(ctx, `DELETE FROM gateway_audit_log WHERE at < ?`, cut)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	// The id of the MaxRows-th newest row: everything below it goes.
	var keep sql.NullInt64
	err = l.db.QueryRow(ctx, `SELECT id FROM gateway_audit_log ORDER BY id DESC LIMIT 1 OFFSET ?`, l.opt.MaxRows-1).Scan(&keep)
	if err == sql.ErrNoRows || err == nil && !keep.Valid {
		return n, nil
	}
	if err != nil {
		return n, err
	}
	res, err = l.db.Exec(ctx, `DELETE FROM gateway_audit_log WHERE id < ?`, keep.Int64)
	if err != nil {
		return n, err
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}

// entryJSON is one entry of GET /api/compliance/audit-log.
type entryJSON struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Actor      admin.Actor     `json:"actor"`
	Method     string          `json:"method"`
	Route      string          `json:"route"`
	Path       string          `json:"path"`
	ResourceID string          `json:"resource_id"`
	Status     int             `json:"status"`
	Request    json.RawMessage `json:"request"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
}

func rawDoc(s sql.NullString) json.RawMessage {
	if !s.Valid || s.String == "" {
		return json.RawMessage("null")
	}
	return json.RawMessage(s.String)
}

// list serves GET /api/compliance/audit-log: the newest entries first,
// at most limit (default DefaultLimit, at most MaxLimit), older than the
// cursor before (an entry id; the answer's next_before), filtered by
// actor (kind, id or name), action (a method, or a route pattern such as
// "DELETE /api/keys/{id}") and since (RFC 3339).
func (l *Log) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "limit", "before", "cursor", "actor", "action", "since":
		default:
			return httpx.BadRequest("unknown parameter %q: use limit, before (or cursor), actor, action, since", k)
		}
	}
	limit := DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return httpx.BadRequest(`"limit" must be 1 to %d`, MaxLimit)
		}
		limit = n
	}
	where, args := []string{"1=1"}, []any{}
	before := q.Get("before")
	if before == "" {
		before = q.Get("cursor")
	}
	if before != "" {
		n, err := strconv.ParseInt(before, 10, 64)
		if err != nil || n < 1 {
			return httpx.BadRequest(`"before" is an entry id (the answer's next_before)`)
		}
		where, args = append(where, "id < ?"), append(args, n)
	}
	if v := q.Get("actor"); v != "" {
		if len(v) > 200 {
			return httpx.BadRequest(`"actor" is longer than 200 characters`)
		}
		where, args = append(where, "(actor_kind = ? OR actor_id = ? OR actor_name = ?)"), append(args, v, v, v)
	}
	if v := q.Get("action"); v != "" {
		switch m := strings.ToUpper(v); {
		case m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE":
			where, args = append(where, "method = ?"), append(args, m)
		case len(v) <= 300 && strings.Contains(v, " /"):
			where, args = append(where, "route = ?"), append(args, v)
		default:
			return httpx.BadRequest(`"action" is a method (POST, PUT, PATCH, DELETE) or a route ("DELETE /api/keys/{id}")`)
		}
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return httpx.BadRequest(`"since" must be an RFC 3339 time`)
		}
		where, args = append(where, "at >= ?"), append(args, t.UnixMilli())
	}
	rows, err := l.db.Query(r.Context(), `SELECT id, at, actor_kind, actor_id, actor_name, addr, method, route, path, resource_id,
		status, request_doc, before_doc, after_doc FROM gateway_audit_log WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	out := []entryJSON{}
	for rows.Next() {
		var e entryJSON
		var at int64
		var req, before, after sql.NullString
		if err := rows.Scan(&e.ID, &at, &e.Actor.Kind, &e.Actor.ID, &e.Actor.Name, &e.Actor.Addr, &e.Method, &e.Route, &e.Path,
			&e.ResourceID, &e.Status, &req, &before, &after); err != nil {
			return err
		}
		e.At = time.UnixMilli(at).UTC()
		e.Request, e.Before, e.After = rawDoc(req), rawDoc(before), rawDoc(after)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	body := map[string]any{"entries": out, "has_more": false, "next_before": nil}
	if len(out) > limit {
		out = out[:limit]
		body["entries"], body["has_more"], body["next_before"] = out, true, strconv.FormatInt(out[limit-1].ID, 10)
	}
	httpx.WriteJSON(w, http.StatusOK, body)
	return nil
}
