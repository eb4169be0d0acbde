package mcp

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the audit log's schema (product Product), one directory
// per dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_mcp"

// The caps of what an audit row keeps.
const (
	maxAuditArgs   = 4 << 10 // the masked arguments' JSON
	maxAuditString = 256     // one string value in them
	maxAuditError  = 512
	// MaxAuditLimit is the largest page of GET /api/mcp/audit.
	MaxAuditLimit  = 500
	maxAuditOffset = 1_000_000
)

// AuditEntry is one tool call.
type AuditEntry struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Tool       string    `json:"tool"`
	Transport  string    `json:"transport"`
	Caller     string    `json:"caller"` // session, key or open
	APIKeyID   string    `json:"apiKeyId"`
	Success    bool      `json:"success"`
	DurationMS int64     `json:"durationMs"`
	Arguments  string    `json:"arguments"` // JSON, secrets masked, capped
	Error      string    `json:"error,omitempty"`
}

// AuditFilter selects audit rows; zero fields select all.
type AuditFilter struct {
	Tool     string
	Success  *bool
	APIKeyID string
	Limit    int
	Offset   int
}

type auditLog struct{ db *sqldb.DB }

var errNoStore = errors.New("mcp: no audit store")

func (a *auditLog) insert(ctx context.Context, e AuditEntry) error {
	if a.db == nil {
		return errNoStore
	}
	_, err := a.db.Exec(ctx, `INSERT INTO gateway_mcp_audit (at, tool, transport, caller, api_key_id, success, duration_ms, arguments, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.At.UnixMilli(), e.Tool, e.Transport, e.Caller, e.APIKeyID, boolInt(e.Success),
		e.DurationMS, e.Arguments, e.Error)
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (f AuditFilter) where() (string, []any) {
	var conds []string
	var args []any
	if f.Tool != "" {
		conds, args = append(conds, "tool = ?"), append(args, f.Tool)
	}
	if f.Success != nil {
		conds, args = append(conds, "success = ?"), append(args, boolInt(*f.Success))
	}
	if f.APIKeyID != "" {
		conds, args = append(conds, "api_key_id = ?"), append(args, f.APIKeyID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// list returns a page of rows, newest first, and how many match.
func (a *auditLog) list(ctx context.Context, f AuditFilter) ([]AuditEntry, int64, error) {
	if a.db == nil {
		return nil, 0, errNoStore
	}
	where, args := f.where()
	var total int64
	if err := a.db.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_mcp_audit`+where, args...).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := a.db.Query(ctx, `SELECT id, at, tool, transport, caller, api_key_id, success, duration_ms, arguments, error
		FROM gateway_mcp_audit`+where+` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		var ok int
		if err := rows.Scan(&e.ID, &at, &e.Tool, &e.Transport, &e.Caller, &e.APIKeyID, &ok, &e.DurationMS, &e.Arguments, &e.Error); err != nil {
			return nil, 0, err
		}
		e.At, e.Success = time.UnixMilli(at).UTC(), ok == 1
		out = append(out, e)
	}
	return out, total, rows.Err()
}

// ToolCount is a tool and how often it was called.
type ToolCount struct {
	Tool  string `json:"tool"`
	Calls int64  `json:"calls"`
}

// AuditStats sum the audit rows since a time.
type AuditStats struct {
	Total         int64       `json:"total"`
	Successes     int64       `json:"successes"`
	Failures      int64       `json:"failures"`
	SuccessRate   float64     `json:"successRate"` // 0..1; 1 without calls
	AvgDurationMS float64     `json:"avgDurationMs"`
	TopTools      []ToolCount `json:"topTools"`
	LastCallAt    *time.Time  `json:"lastCallAt"`
}

// stats sums the rows at or after since (zero: all).
func (a *auditLog) stats(ctx context.Context, since time.Time) (AuditStats, error) {
	st := AuditStats{SuccessRate: 1, TopTools: []ToolCount{}}
	if a.db == nil {
		return st, errNoStore
	}
	from := int64(0)
	if !since.IsZero() {
		from = since.UnixMilli()
	}
	var avg *float64
	var last *int64
	var succ *int64
	err := a.db.QueryRow(ctx, `SELECT COUNT(*), SUM(success), CAST(AVG(duration_ms) AS DOUBLE PRECISION), MAX(at) FROM gateway_mcp_audit WHERE at >= ?`, from).
		Scan(&st.Total, &succ, &avg, &last)
	if err != nil {
		return st, err
	}
	if succ != nil {
		st.Successes = *succ
	}
	st.Failures = st.Total - st.Successes
	if st.Total > 0 {
		st.SuccessRate = float64(st.Successes) / float64(st.Total)
	}
	if avg != nil {
		st.AvgDurationMS = *avg
	}
	if last != nil {
		t := time.UnixMilli(*last).UTC()
		st.LastCallAt = &t
	}
	rows, err := a.db.Query(ctx, `SELECT tool, COUNT(*) AS n FROM gateway_mcp_audit WHERE at >= ? GROUP BY tool ORDER BY n DESC, tool LIMIT 10`, from)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var tc ToolCount
		if err := rows.Scan(&tc.Tool, &tc.Calls); err != nil {
			return st, err
		}
		st.TopTools = append(st.TopTools, tc)
	}
	return st, rows.Err()
}

// prune deletes the rows older than before and all but the newest max.
func (a *auditLog) prune(ctx context.Context, before time.Time, max int) error {
	if a.db == nil {
		return nil
	}
	if _, err := a.db.Exec(ctx, `DELETE FROM gateway_mcp_audit WHERE at < ?`, before.UnixMilli()); err != nil {
		return err
	}
	var top *int64
	if err := a.db.QueryRow(ctx, `SELECT MAX(id) FROM gateway_mcp_audit`).Scan(&top); err != nil || top == nil {
		return err
	}
	_, err := a.db.Exec(ctx, `DELETE FROM gateway_mcp_audit WHERE id <= ?`, *top-int64(max))
	return err
}

// record writes the audit row of a call; a failure to write is logged,
// never the caller's.
func (s *Server) record(info ToolInfo, transport string, c Caller, args json.RawMessage, start time.Time, err error) {
	e := AuditEntry{At: start.UTC(), Tool: info.Name, Transport: transport, Caller: c.Kind, APIKeyID: c.KeyID,
		Success: err == nil, DurationMS: s.opt.Clock.Now().Sub(start).Milliseconds(), Arguments: MaskArguments(args)}
	if err != nil {
		e.Error = capString(err.Error(), maxAuditError)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if werr := s.audit.insert(ctx, e); werr != nil {
		s.opt.Log.Warn("mcp: audit write", "tool", info.Name, "err", werr)
	}
}

// secretName matches the argument names whose values are never kept.
var secretName = regexp.MustCompile(`(?i)(key|token|secret|password|passwd|authorization|credential|cookie|bearer)`)

// secretValue matches values that look like credentials wherever they
// appear (gateway keys, provider keys, bearer tokens, JWTs).
var secretValue = regexp.MustCompile(`(?i)(sk-[a-z0-9_\-]{8,}|omni[-_][a-z0-9_\-]{8,}|bearer\s+\S{8,}|eyJ[a-zA-Z0-9_\-]{10,}\.[a-zA-Z0-9_\-]+\.[a-zA-Z0-9_\-]+)`)

// MaskArguments is the JSON the audit log keeps of a call's arguments:
// values under names that hold secrets replaced by "***" (ids of keys,
// named "keyId" or "apiKeyId", are kept), credential-looking values
// masked wherever they are, long strings cut, and the whole at most
// 4 KiB.
func MaskArguments(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return `"(unreadable arguments)"`
	}
	b, err := json.Marshal(mask(v, ""))
	if err != nil {
		return `"(unreadable arguments)"`
	}
	if len(b) > maxAuditArgs {
		return string(b[:validUTF8Cut(b, maxAuditArgs-len("…(truncated)"))]) + "…(truncated)"
	}
	return string(b)
}

func mask(v any, name string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			t[k] = mask(val, k)
		}
		return t
	case []any:
		for i := range t {
			t[i] = mask(t[i], name)
		}
		return t
	case string:
		if name != "" && secretName.MatchString(name) && !isKeyID(name) {
			return "***"
		}
		return capString(secretValue.ReplaceAllString(t, "***"), maxAuditString)
	}
	if name != "" && secretName.MatchString(name) && !isKeyID(name) {
		return "***"
	}
	return v
}

func isKeyID(name string) bool {
	n := strings.ToLower(name)
	return n == "keyid" || n == "apikeyid" || n == "key_id" || n == "api_key_id"
}

func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:validUTF8Cut([]byte(s), n)] + "…"
}

// validUTF8Cut is the largest length ≤ n that does not split a rune.
func validUTF8Cut(b []byte, n int) int {
	if n >= len(b) {
		return len(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}
