package store_test

import (
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/server/store/migrations"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

func migrationFiles(dialect string) ([]string, error) {
	entries, err := fs.ReadDir(migrations.FS, dialect)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Both dialects ship the same migrations (same versions and names).
func TestMigrationFilesMatch(t *testing.T) {
	lite, err := migrationFiles("sqlite")
	must(t, err)
	pg, err := migrationFiles("postgres")
	must(t, err)
	if len(lite) == 0 || !slices.Equal(lite, pg) {
		t.Fatalf("sqlite migrations %v, postgres migrations %v: want the same files", lite, pg)
	}
}

// column is what both dialects can report alike about a column.
type column struct {
	NotNull bool
}

// sqliteSchema returns table -> column -> facts for every user table.
func sqliteSchema(t *testing.T, db *sqldb.DB) map[string]map[string]column {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`)
	must(t, err)
	var tables []string
	for rows.Next() {
		var n string
		must(t, rows.Scan(&n))
		tables = append(tables, n)
	}
	rows.Close()
	must(t, rows.Err())
	out := map[string]map[string]column{}
	for _, tbl := range tables {
		cols := map[string]column{}
		rows, err := db.Query(ctx, `SELECT name, "notnull", pk FROM pragma_table_info(?)`, tbl)
		must(t, err)
		for rows.Next() {
			var name string
			var notNull, pk int
			must(t, rows.Scan(&name, &notNull, &pk))
			// PostgreSQL makes primary-key columns NOT NULL implicitly;
			// SQLite does not (a quirk), so compare them as NOT NULL.
			cols[name] = column{NotNull: notNull == 1 || pk > 0}
		}
		rows.Close()
		must(t, rows.Err())
		out[tbl] = cols
	}
	return out
}

func postgresSchema(t *testing.T, db *sqldb.DB) map[string]map[string]column {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT c.table_name, c.column_name, c.is_nullable
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'`)
	must(t, err)
	defer rows.Close()
	out := map[string]map[string]column{}
	for rows.Next() {
		var tbl, col, nullable string
		must(t, rows.Scan(&tbl, &col, &nullable))
		if out[tbl] == nil {
			out[tbl] = map[string]column{}
		}
		out[tbl][col] = column{NotNull: nullable == "NO"}
	}
	must(t, rows.Err())
	return out
}

// The two dialects' migrations produce the same tables with the same
// columns and nullability.
func TestSchemaParity(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	lite := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	pg := openDB(t, pgDSN)
	newStore(t, lite)
	newStore(t, pg)

	ls, ps := sqliteSchema(t, lite), postgresSchema(t, pg)
	if len(ls) < 7 {
		t.Fatalf("sqlite schema has only %d tables: %v", len(ls), slices.Sorted(maps.Keys(ls)))
	}
	for _, want := range []string{"schema_migrations", "edge_users", "edge_devices", "edge_networks", "edge_memberships", "edge_epoch"} {
		if _, ok := ls[want]; !ok {
			t.Errorf("sqlite lacks table %s", want)
		}
	}
	lt, pt := slices.Sorted(maps.Keys(ls)), slices.Sorted(maps.Keys(ps))
	if !slices.Equal(lt, pt) {
		t.Fatalf("tables differ:\nsqlite   %v\npostgres %v", lt, pt)
	}
	for _, tbl := range lt {
		lc, pc := ls[tbl], ps[tbl]
		if a, b := slices.Sorted(maps.Keys(lc)), slices.Sorted(maps.Keys(pc)); !slices.Equal(a, b) {
			t.Errorf("%s columns differ:\nsqlite   %v\npostgres %v", tbl, a, b)
			continue
		}
		for col, l := range lc {
			if p := pc[col]; l != p {
				t.Errorf("%s.%s: sqlite NOT NULL=%v, postgres NOT NULL=%v", tbl, col, l.NotNull, p.NotNull)
			}
		}
	}
}
