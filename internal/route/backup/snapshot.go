package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/store/migrations"
)

// Tables that are never copied into a backup nor restored from one.
const (
	// Dashboard login sessions stay with the running gateway: a restore
	// does not log out the administrator performing it, and a backup file
	// that leaves the host carries no session ids.
	sessionsTable = "route_sessions"
	// The change counter moves forward on a restore (replicas reload)
	// instead of being set back.
	epochTable = "route_epoch"
)

// product is the migration product name of the gateway's tables.
const product = "route"

// table is a gateway table with its columns.
type table struct {
	Name    string
	Columns []string
	Bools   map[string]bool // boolean columns (converted for PostgreSQL)
}

// eq is what copying needs from either side: sqldb.Tx or a raw SQLite
// transaction.
type eq interface {
	Exec(ctx context.Context, q string, args ...any) (sql.Result, error)
	Query(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// rawTx adapts *sql.Tx (a backup file, always SQLite: `?` as is).
type rawTx struct{ tx *sql.Tx }

func (r rawTx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return r.tx.ExecContext(ctx, q, args...)
}

func (r rawTx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return r.tx.QueryContext(ctx, q, args...)
}

func quote(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }

func isGatewayTable(name string) bool {
	return strings.HasPrefix(name, "route_")
}

// ephemeral tables hold what is kept only for the running gateway: the
// dashboard sessions and derived, short-lived data (response cache,
// idempotency records, stored Responses conversations: clients' content
// kept for a day). Backups carry them empty and a restore leaves the
// live ones alone.
func ephemeral(name string) bool {
	return name == sessionsTable || name == "route_responses" || strings.Contains(name, "cache") || strings.Contains(name, "idempot")
}

// liveTables lists the gateway's tables and columns in the live database.
func liveTables(ctx context.Context, q eq, dialect sqldb.Dialect) ([]table, error) {
	if dialect != sqldb.Postgres {
		return sqliteTables(ctx, q)
	}
	rows, err := q.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name LIKE 'route\_%' ORDER BY table_name, ordinal_position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []table
	for rows.Next() {
		var tn, col, typ string
		if err := rows.Scan(&tn, &col, &typ); err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].Name != tn {
			out = append(out, table{Name: tn, Bools: map[string]bool{}})
		}
		t := &out[len(out)-1]
		t.Columns = append(t.Columns, col)
		if typ == "boolean" {
			t.Bools[col] = true
		}
	}
	return out, rows.Err()
}

// sqliteTables lists the gateway's tables and columns of a SQLite database.
func sqliteTables(ctx context.Context, q eq) ([]table, error) {
	names, err := queryStrings(ctx, q, `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'route\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var out []table
	for _, n := range names {
		t := table{Name: n, Bools: map[string]bool{}}
		rows, err := q.Query(ctx, `SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var col, typ string
			if err := rows.Scan(&col, &typ); err != nil {
				rows.Close()
				return nil, err
			}
			t.Columns = append(t.Columns, col)
			if strings.EqualFold(typ, "BOOLEAN") {
				t.Bools[col] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func queryStrings(ctx context.Context, q eq, query string, args ...any) ([]string, error) {
	return scanStrings(q.Query(ctx, query, args...))
}

// scanStrings reads a one-column result of strings.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// copyTable copies every row of t (its columns as listed) from one
// database into another; toPostgres converts SQLite's 0/1 booleans.
func copyTable(ctx context.Context, from, to eq, t table, toPostgres bool) (int64, error) {
	cols := make([]string, len(t.Columns))
	marks := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quote(c)
		marks[i] = "?"
	}
	colList := strings.Join(cols, ", ")
	rows, err := from.Query(ctx, "SELECT "+colList+" FROM "+quote(t.Name))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	insert := "INSERT INTO " + quote(t.Name) + " (" + colList + ") VALUES (" + strings.Join(marks, ", ") + ")"
	var n int64
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(t.Columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("read %s: %w", t.Name, err)
		}
		args := make([]any, len(vals))
		for i, v := range vals {
			args[i] = convert(v, toPostgres && t.Bools[t.Columns[i]])
		}
		if _, err := to.Exec(ctx, insert, args...); err != nil {
			return n, fmt.Errorf("write %s: %w", t.Name, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("read %s: %w", t.Name, err)
	}
	return n, nil
}

// convert makes a scanned value insertable: SQLite booleans are integers.
func convert(v any, boolean bool) any {
	if !boolean {
		return v
	}
	switch x := v.(type) {
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x == "1" || strings.EqualFold(x, "true")
	case []byte:
		return string(x) == "1" || strings.EqualFold(string(x), "true")
	}
	return v
}

// openFile opens a backup file (always SQLite) with one connection and
// foreign keys off (rows are copied table by table).
func openFile(path string) (*sql.DB, error) {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+"?_pragma=foreign_keys(0)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// snapshot writes the gateway's tables, consistent as of one moment, to
// a new SQLite file at dst.
func (s *Service) snapshot(ctx context.Context, dst string) error {
	if s.opt.DB.Dialect == sqldb.SQLite {
		// A consistent copy of the running database, then everything that
		// is not the gateway's is dropped from the copy.
		if _, err := s.opt.DB.Exec(ctx, `VACUUM INTO ?`, dst); err != nil {
			return fmt.Errorf("backup: vacuum into: %w", err)
		}
		return scrub(ctx, dst)
	}
	return s.copySnapshot(ctx, dst)
}

// scrub removes from a copy of the whole database what is not the
// gateway's (other products' tables and migration records, dashboard
// sessions) and leaves it a self-contained rollback-journal file.
func scrub(ctx context.Context, path string) (err error) {
	db, err := openFile(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	views, err := rawStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'view'`)
	if err != nil {
		return fmt.Errorf("backup: scrub: %w", err)
	}
	for _, v := range views {
		if _, err := db.ExecContext(ctx, "DROP VIEW "+quote(v)); err != nil {
			return fmt.Errorf("backup: scrub: %w", err)
		}
	}
	tables, err := rawStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("backup: scrub: %w", err)
	}
	for _, t := range tables {
		if isGatewayTable(t) || t == "schema_migrations" {
			continue
		}
		if _, err := db.ExecContext(ctx, "DROP TABLE "+quote(t)); err != nil {
			return fmt.Errorf("backup: scrub: %w", err)
		}
	}
	clear := []string{`DELETE FROM schema_migrations WHERE product <> 'route'`}
	for _, t := range tables {
		if isGatewayTable(t) && ephemeral(t) {
			clear = append(clear, "DELETE FROM "+quote(t))
		}
	}
	for _, q := range append(clear, `PRAGMA journal_mode = DELETE`, `VACUUM`) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("backup: scrub: %w", err)
		}
	}
	return nil
}

func rawStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	return scanStrings(db.QueryContext(ctx, q))
}

// newSchemaFile creates a SQLite file at path with the gateway's schema
// at this binary's version (what the live database was migrated to) and
// no rows.
func newSchemaFile(ctx context.Context, path string) error {
	if err := migrateFile(ctx, path); err != nil {
		return err
	}
	db, err := openFile(path)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{`DELETE FROM ` + epochTable, `PRAGMA journal_mode = DELETE`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// migrateFile brings a SQLite file to this binary's gateway schema.
func migrateFile(ctx context.Context, path string) error {
	db, err := sqldb.Open(ctx, path)
	if err != nil {
		return err
	}
	err = sqldb.Migrate(ctx, db, product, migrations.FS)
	return errors.Join(err, db.Close())
}

// copySnapshot builds the backup file row by row (PostgreSQL), reading
// every table in one repeatable-read transaction.
func (s *Service) copySnapshot(ctx context.Context, dst string) error {
	if err := newSchemaFile(ctx, dst); err != nil {
		os.Remove(dst)
		return fmt.Errorf("backup: create file: %w", err)
	}
	file, err := openFile(dst)
	if err != nil {
		return err
	}
	defer file.Close()
	ftx, err := file.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer ftx.Rollback()
	err = s.opt.DB.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`); err != nil {
			return err
		}
		tables, err := liveTables(ctx, tx, s.opt.DB.Dialect)
		if err != nil {
			return err
		}
		for _, t := range tables {
			if ephemeral(t.Name) {
				continue
			}
			if _, err := copyTable(ctx, tx, rawTx{ftx}, t, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backup: copy tables: %w", err)
	}
	return ftx.Commit()
}

// tableCount is a table and its number of rows.
type tableCount struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
}

// fileInfo reads the schema version and per-table row counts of a backup file.
func fileInfo(ctx context.Context, path string) (version string, counts []tableCount, err error) {
	db, err := openFile(path)
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), '') FROM schema_migrations WHERE product = ?`, product).Scan(&version); err != nil {
		return "", nil, err
	}
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", nil, err
	}
	defer tx.Rollback()
	tables, err := sqliteTables(ctx, rawTx{tx})
	if err != nil {
		return "", nil, err
	}
	for _, t := range tables {
		var n int64
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quote(t.Name)).Scan(&n); err != nil {
			return "", nil, err
		}
		counts = append(counts, tableCount{t.Name, n})
	}
	sort.Slice(counts, func(i, j int) bool { return counts[i].Name < counts[j].Name })
	return version, counts, nil
}
