package store_test

import (
	"testing"

	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- migrations ----

func testMigrate(t *testing.T, s *store.Store) {
	db := s.DB()
	count := func() int {
		t.Helper()
		var n int
		must(t, db.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE product = 'edge'`).Scan(&n))
		return n
	}
	files, err := migrationFiles(string(db.Dialect))
	must(t, err)
	if got := count(); got != len(files) || got == 0 {
		t.Fatalf("%d migrations recorded, want %d", got, len(files))
	}
	addUser(t, s, "u1")
	e := epoch(t, s)
	// Idempotent: New (and so Migrate) again changes nothing.
	for range 2 {
		if _, err := store.New(ctx, db); err != nil {
			t.Fatalf("migrating again: %v", err)
		}
	}
	if got := count(); got != len(files) {
		t.Fatalf("%d migrations recorded after re-running, want %d", got, len(files))
	}
	if got := epoch(t, s); got != e {
		t.Fatalf("epoch reset to %d by re-migrating (was %d)", got, e)
	}
	if _, err := s.UserByID(ctx, "u1"); err != nil {
		t.Fatalf("data lost by re-migrating: %v", err)
	}

	// A database migrated by a newer binary is refused.
	_, err = db.Exec(ctx, `INSERT INTO schema_migrations (product, version, name, applied_at) VALUES ('edge', '99991231235959', 'future', 0)`)
	must(t, err)
	if _, err := store.New(ctx, db); err == nil {
		t.Fatal("store.New accepted a database with an unknown migration")
	}
	// Another product's versions are not ours to judge.
	_, err = db.Exec(ctx, `DELETE FROM schema_migrations WHERE version = '99991231235959'`)
	must(t, err)
	_, err = db.Exec(ctx, `INSERT INTO schema_migrations (product, version, name, applied_at) VALUES ('route', '99991231235959', 'other', 0)`)
	must(t, err)
	if _, err := store.New(ctx, db); err != nil {
		t.Fatalf("another product's migration blocked edge: %v", err)
	}
}
