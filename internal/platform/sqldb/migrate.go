package sqldb

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// Migrate applies the migrations of one product that are not yet recorded.
// fsys holds one directory per dialect ("sqlite", "postgres"), each with
// files named "<version>_<name>.sql" where version is a sortable timestamp.
// Migrations are append-only: a recorded version whose file is gone is an
// error (the database is newer than this binary). Each file runs in its own
// transaction together with its bookkeeping row; concurrent processes are
// serialised, so replicas may start at the same time.
func Migrate(ctx context.Context, db *DB, product string, fsys fs.FS) error {
	dir := string(db.Dialect)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("sqldb: read %s migrations: %w", dir, err)
	}
	type mig struct{ version, name, file string }
	var migs []mig
	known := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		base := strings.TrimSuffix(e.Name(), ".sql")
		v, name, ok := strings.Cut(base, "_")
		if !ok || v == "" {
			return fmt.Errorf("sqldb: migration %q is not named <version>_<name>.sql", e.Name())
		}
		if known[v] {
			return fmt.Errorf("sqldb: duplicate migration version %s", v)
		}
		known[v] = true
		migs = append(migs, mig{v, name, path.Join(dir, e.Name())})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })

	return db.InTx(ctx, func(tx *Tx) error {
		// One lock for every product: they share the bookkeeping table,
		// which must not be created twice by replicas starting together.
		if err := tx.LockKey(ctx, "omni.migrate"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			product TEXT NOT NULL,
			version TEXT NOT NULL,
			name TEXT NOT NULL,
			applied_at BIGINT NOT NULL,
			PRIMARY KEY (product, version))`); err != nil {
			return fmt.Errorf("sqldb: create schema_migrations: %w", err)
		}
		applied := map[string]bool{}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations WHERE product = ?`, product)
		if err != nil {
			return fmt.Errorf("sqldb: read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return err
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for v := range applied {
			if !known[v] {
				return fmt.Errorf("sqldb: %s migration %s is recorded but unknown to this binary (database is newer)", product, v)
			}
		}
		for _, m := range migs {
			if applied[m.version] {
				continue
			}
			body, err := fs.ReadFile(fsys, m.file)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("sqldb: apply %s migration %s_%s: %w", product, m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (product, version, name, applied_at) VALUES (?, ?, ?, CAST(? AS BIGINT))`,
				product, m.version, m.name, time.Now().Unix()); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sub returns the directory dir of a package's embedded migrations
// (//go:embed dir), which holds one directory per dialect. It panics on
// a name fs.Sub refuses: a mistake in the package, found by its first
// test.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
