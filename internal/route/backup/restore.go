package backup

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/store/migrations"
)

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Restore replaces the gateway's tables with those of the kept backup id.
func (s *Service) Restore(ctx context.Context, id string) ([]tableCount, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := os.Open(filepath.Join(s.opt.Dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	defer src.Close()
	// Validation may upgrade the file's schema: work on a copy.
	return s.restoreFrom(ctx, src, -1)
}

// Import replaces the gateway's tables with those of an uploaded backup
// file (as made by a backup or an export).
func (s *Service) Import(ctx context.Context, r io.Reader) ([]tableCount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restoreFrom(ctx, r, s.opt.MaxUpload)
}

// restoreFrom copies r into a temporary file, validates it and restores
// from it. limit < 0 means no limit. The caller holds s.mu.
func (s *Service) restoreFrom(ctx context.Context, r io.Reader, limit int64) ([]tableCount, error) {
	if err := s.ensureDir(); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(s.opt.Dir, ".restore-*.sqlite")
	if err != nil {
		return nil, err
	}
	path := tmp.Name()
	defer func() {
		for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
			os.Remove(p)
		}
	}()
	src := r
	if limit >= 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.Copy(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("backup: receive file: %w", err)
	}
	if limit >= 0 && n > limit {
		return nil, fmt.Errorf("%w: the file is larger than %d bytes", ErrTooLarge, limit)
	}
	if err := validate(ctx, path); err != nil {
		return nil, err
	}
	counts, err := s.restoreFile(ctx, path)
	if err != nil {
		return nil, err
	}
	s.opt.Log.Info("gateway tables restored from a backup file")
	if s.opt.Reload != nil {
		if err := s.opt.Reload.Load(ctx); err != nil {
			return nil, fmt.Errorf("backup: restored, but reloading the gateway failed: %w", err)
		}
	}
	return counts, nil
}

// knownVersions lists the gateway schema versions this binary knows.
func knownVersions() (map[string]bool, error) {
	entries, err := fs.ReadDir(migrations.FS, "sqlite")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range entries {
		if v, _, ok := strings.Cut(e.Name(), "_"); ok {
			out[v] = true
		}
	}
	return out, nil
}

// validate checks that path is an undamaged SQLite file holding the
// gateway's tables at a schema version this binary knows, and upgrades it
// to the current schema.
func validate(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	head := make([]byte, len(sqliteHeader))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, sqliteHeader) {
		return invalid("the file is not a SQLite database")
	}
	if err := checkFile(ctx, path); err != nil {
		return err
	}
	if err := migrateFile(ctx, path); err != nil {
		return invalid("the file's gateway schema cannot be brought to this version")
	}
	return nil
}

func checkFile(ctx context.Context, path string) error {
	db, err := openFile(path)
	if err != nil {
		return invalid("the file cannot be opened as a SQLite database")
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return invalid("the file cannot be opened as a SQLite database")
	}
	defer conn.Close()
	var result string
	if err := conn.QueryRowContext(ctx, `PRAGMA integrity_check(1)`).Scan(&result); err != nil || result != "ok" {
		return invalid("the SQLite file is damaged (integrity check failed)")
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return invalid("the SQLite file cannot be read")
	}
	if n == 0 {
		return invalid("the file does not contain OmniRoute's tables (no migration records)")
	}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations WHERE product = ?`, product)
	if err != nil {
		return invalid("the file's migration records cannot be read")
	}
	var versions []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return invalid("the file's migration records cannot be read")
		}
		versions = append(versions, v)
	}
	rows.Close()
	if rows.Err() != nil {
		return invalid("the file's migration records cannot be read")
	}
	if len(versions) == 0 {
		return invalid("the file does not contain OmniRoute's tables")
	}
	known, err := knownVersions()
	if err != nil {
		return err
	}
	for _, v := range versions {
		if !known[v] {
			return invalid("the file was made by a newer version of omni (gateway schema %s); upgrade omni first", clip(v))
		}
	}
	return nil
}

// restoreFile replaces every gateway table except the dashboard sessions
// and the change counter with the rows of the (validated) file, in one
// transaction, and bumps the change counter so replicas reload.
func (s *Service) restoreFile(ctx context.Context, path string) ([]tableCount, error) {
	file, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	ftx, err := file.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer ftx.Rollback()
	src := rawTx{ftx}
	fileTables, err := sqliteTables(ctx, src)
	if err != nil {
		return nil, err
	}
	byName := map[string]table{}
	for _, t := range fileTables {
		byName[t.Name] = t
	}
	var counts []tableCount
	err = s.opt.DB.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "route.restore"); err != nil {
			return err
		}
		live, err := liveTables(ctx, tx, s.opt.DB.Dialect)
		if err != nil {
			return err
		}
		var todo []table
		for _, t := range live {
			if ephemeral(t.Name) || t.Name == epochTable {
				continue
			}
			ft, ok := byName[t.Name]
			if !ok {
				return invalid("the file lacks the table %s", t.Name)
			}
			for _, c := range t.Columns {
				if !slices.Contains(ft.Columns, c) {
					return invalid("the file's table %s lacks the column %s", t.Name, c)
				}
			}
			todo = append(todo, t)
		}
		order, err := parentsFirst(ctx, src, todo)
		if err != nil {
			return err
		}
		for i := len(order) - 1; i >= 0; i-- {
			if _, err := tx.Exec(ctx, "DELETE FROM "+quote(order[i].Name)); err != nil {
				return fmt.Errorf("clear %s: %w", order[i].Name, err)
			}
		}
		for _, t := range order {
			n, err := copyTable(ctx, src, tx, t, s.opt.DB.Dialect == sqldb.Postgres)
			if err != nil {
				return err
			}
			counts = append(counts, tableCount{t.Name, n})
		}
		_, err = tx.Exec(ctx, `UPDATE route_epoch SET value = value + 1 WHERE id = 1`)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return nil, err
		}
		return nil, fmt.Errorf("backup: restore: %w", err)
	}
	slices.SortFunc(counts, func(a, b tableCount) int { return strings.Compare(a.Name, b.Name) })
	return counts, nil
}

// parentsFirst orders tables so that a table comes after the tables its
// foreign keys reference (read from the file, whose schema is the live one).
func parentsFirst(ctx context.Context, file eq, tables []table) ([]table, error) {
	deps := map[string][]string{}
	for _, t := range tables {
		refs, err := queryStrings(ctx, file, `SELECT "table" FROM pragma_foreign_key_list(?)`, t.Name)
		if err != nil {
			return nil, err
		}
		deps[t.Name] = refs
	}
	var out []table
	state := map[string]int{} // 1 visiting, 2 done
	byName := map[string]table{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	var visit func(string)
	visit = func(n string) {
		if state[n] != 0 {
			return // done, or a cycle (broken arbitrarily)
		}
		state[n] = 1
		for _, d := range deps[n] {
			if _, ok := byName[d]; ok && d != n {
				visit(d)
			}
		}
		state[n] = 2
		out = append(out, byName[n])
	}
	for _, t := range tables {
		visit(t.Name)
	}
	return out, nil
}
