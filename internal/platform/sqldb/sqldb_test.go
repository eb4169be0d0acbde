package sqldb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
)

var ctx = context.Background()

func openT(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sqliteDB(t *testing.T) *DB { return openT(t, filepath.Join(t.TempDir(), "test.db")) }

func postgresDB(t *testing.T) *DB { return openT(t, testenv.Postgres(t)) }

// dialects runs fn once per dialect with a fresh database.
func dialects(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteDB(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresDB(t)) })
}

func TestRebind(t *testing.T) {
	pg := &DB{Dialect: Postgres}
	cases := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ?", "SELECT * FROM t WHERE a = $1"},
		{"INSERT INTO t (a, b, c) VALUES (?, ?, ?)", "INSERT INTO t (a, b, c) VALUES ($1, $2, $3)"},
		{"UPDATE t SET a = ? WHERE b = '?' AND c = ?", "UPDATE t SET a = $1 WHERE b = '?' AND c = $2"},
		{"SELECT '??', ?", "SELECT '??', $1"},
		{"SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"}, // doubled quote inside a literal
		{"SELECT '', ?, ''", "SELECT '', $1, ''"},       // empty literals
		{"SELECT 'a?b' || ? || '?'", "SELECT 'a?b' || $1 || '?'"},
		{"?????????????", "$1$2$3$4$5$6$7$8$9$10$11$12$13"}, // multi-digit numbering
	}
	for _, tc := range cases {
		if got := pg.Rebind(tc.in); got != tc.want {
			t.Errorf("Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// Cached result is the same.
		if got := pg.Rebind(tc.in); got != tc.want {
			t.Errorf("cached Rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	lite := &DB{Dialect: SQLite}
	for _, tc := range cases {
		if got := lite.Rebind(tc.in); got != tc.in {
			t.Errorf("sqlite Rebind(%q) = %q, want unchanged", tc.in, got)
		}
	}
}

func TestRebindConcurrent(t *testing.T) {
	pg := &DB{Dialect: Postgres}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				q := fmt.Sprintf("SELECT ? /* %d */, '?', ?", j%17)
				want := fmt.Sprintf("SELECT $1 /* %d */, '?', $2", j%17)
				if got := pg.Rebind(q); got != want {
					t.Errorf("goroutine %d: Rebind = %q, want %q", i, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Rebound queries run on PostgreSQL, question marks in literals included.
func TestRebindRuns(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		var a, b string
		var n int
		err := db.QueryRow(ctx, `SELECT '?' || CAST(? AS TEXT), 'x''?', CAST(? AS INTEGER)`, "q", 7).Scan(&a, &b, &n)
		if err != nil {
			t.Fatal(err)
		}
		if a != "?q" || b != "x'?" || n != 7 {
			t.Fatalf("got %q %q %d", a, b, n)
		}
	})
}

func TestIsUniqueViolation(t *testing.T) {
	if IsUniqueViolation(nil) || IsUniqueViolation(errors.New("UNIQUE constraint failed")) || IsUniqueViolation(ErrNoRows) {
		t.Fatal("IsUniqueViolation true for a non-driver error")
	}
	dialects(t, func(t *testing.T, db *DB) {
		for _, q := range []string{
			`CREATE TABLE parent (id TEXT PRIMARY KEY)`,
			`CREATE TABLE u (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, a TEXT, b TEXT, parent TEXT REFERENCES parent(id), UNIQUE (a, b))`,
			`CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)`,
			`INSERT INTO parent (id) VALUES ('p')`,
		} {
			if _, err := db.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		ins := func(id, email, a, b string) error {
			_, err := db.Exec(ctx, `INSERT INTO u (id, email, a, b) VALUES (?, ?, ?, ?)`, id, email, a, b)
			return err
		}
		if err := ins("1", "x@example.com", "a", "b"); err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"primary key":      ins("1", "y@example.com", "c", "d"),
			"unique column":    ins("2", "x@example.com", "c", "d"),
			"unique composite": ins("3", "z@example.com", "a", "b"),
		} {
			if err == nil {
				t.Fatalf("%s: duplicate accepted", name)
			}
			if !IsUniqueViolation(err) {
				t.Errorf("%s: IsUniqueViolation(%v) = false", name, err)
			}
			if !IsUniqueViolation(fmt.Errorf("wrapped: %w", err)) {
				t.Errorf("%s: IsUniqueViolation(wrapped) = false", name)
			}
		}
		// Integer primary key (a rowid alias in SQLite).
		if _, err := db.Exec(ctx, `INSERT INTO r (id, v) VALUES (1, 'a')`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO r (id, v) VALUES (1, 'b')`); !IsUniqueViolation(err) {
			t.Errorf("integer primary key: IsUniqueViolation(%v) = false", err)
		}
		// Other constraint failures are not unique violations.
		_, err := db.Exec(ctx, `INSERT INTO u (id, email) VALUES ('9', NULL)`)
		if err == nil || IsUniqueViolation(err) {
			t.Errorf("NOT NULL violation: err %v, IsUniqueViolation %v", err, IsUniqueViolation(err))
		}
		_, err = db.Exec(ctx, `INSERT INTO u (id, email, parent) VALUES ('8', 'p@example.com', 'missing')`)
		if err == nil || IsUniqueViolation(err) {
			t.Errorf("foreign key violation: err %v, IsUniqueViolation %v", err, IsUniqueViolation(err))
		}
		_, err = db.Exec(ctx, `SELECT * FROM no_such_table`)
		if err == nil || IsUniqueViolation(err) {
			t.Errorf("syntax/missing table: err %v, IsUniqueViolation %v", err, IsUniqueViolation(err))
		}
	})
}

func TestSQLitePath(t *testing.T) {
	cases := map[string]string{
		"sqlite:///abs/path/omni.db":     "/abs/path/omni.db",
		"sqlite://rel/path.db":           "rel/path.db",
		"sqlite:rel.db":                  "rel.db",
		"sqlite:/abs.db":                 "/abs.db",
		"file:path.db":                   "path.db",
		"file:/abs/path.db?mode=rwc&x=1": "/abs/path.db",
		"/bare/abs.db":                   "/bare/abs.db",
		"bare.db":                        "bare.db",
		"./data/omni.db":                 "./data/omni.db",
	}
	for in, want := range cases {
		if got := sqlitePath(in); got != want {
			t.Errorf("sqlitePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenSQLiteForms(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "nested", "deeper", "omni.db")
	// Each form names the same file; the directory is created on first use.
	forms := []string{"sqlite://" + abs, "file:" + abs, abs, "file:" + abs + "?cache=shared", "sqlite:" + abs}
	for i, dsn := range forms {
		db := openT(t, dsn)
		if db.Dialect != SQLite {
			t.Fatalf("Open(%q).Dialect = %s", dsn, db.Dialect)
		}
		if i == 0 {
			if _, err := db.Exec(ctx, `CREATE TABLE marker (v TEXT)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, `INSERT INTO marker (v) VALUES ('hello')`); err != nil {
				t.Fatal(err)
			}
		}
		var v string
		if err := db.QueryRow(ctx, `SELECT v FROM marker`).Scan(&v); err != nil || v != "hello" {
			t.Fatalf("Open(%q) does not see the same file: %q, %v", dsn, v, err)
		}
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("database file not at %s: %v", abs, err)
	}
	// The directory is private.
	if st, err := os.Stat(filepath.Dir(abs)); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("data dir mode %v, %v; want no group/other access", st.Mode().Perm(), err)
	}

	// Relative forms resolve against the working directory.
	t.Chdir(dir)
	for _, dsn := range []string{"sqlite://rel/a.db", "file:rel/b.db", "rel/c.db", "sqlite:rel/d.db"} {
		db := openT(t, dsn)
		if _, err := db.Exec(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		name := filepath.Join(dir, sqlitePath(dsn))
		if _, err := os.Stat(name); err != nil {
			t.Fatalf("Open(%q) did not create %s: %v", dsn, name, err)
		}
	}
}

func TestOpenSQLitePragmas(t *testing.T) {
	db := sqliteDB(t)
	var mode string
	if err := db.QueryRow(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || strings.ToLower(mode) != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	for _, pool := range []string{"read", "write"} {
		var fk int
		var err error
		if pool == "read" {
			err = db.QueryRow(ctx, `PRAGMA foreign_keys`).Scan(&fk)
		} else {
			err = db.InTx(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, `PRAGMA foreign_keys`).Scan(&fk) })
		}
		if err != nil || fk != 1 {
			t.Fatalf("%s pool: foreign_keys = %d, %v; want 1", pool, fk, err)
		}
	}
}

// A data directory whose path holds URI metacharacters must still open the
// named file, with the pragmas applied.
func TestOpenSQLiteSpecialPath(t *testing.T) {
	for _, name := range []string{"a#b", "c?d", "e%20f"} {
		p := filepath.Join(t.TempDir(), name, "omni.db")
		db := openT(t, p)
		if _, err := db.Exec(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: database not created at %s: %v", name, p, err)
		}
		var fk int
		if err := db.QueryRow(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
			t.Errorf("%s: foreign_keys = %d, %v", name, fk, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(ctx, ""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
	for _, dsn := range []string{"sqlite://", "file:", "sqlite:"} {
		if db, err := Open(ctx, dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded with an empty path", dsn)
		}
	}
	// A path below a regular file cannot be created.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(ctx, filepath.Join(f, "sub", "omni.db")); err == nil {
		db.Close()
		t.Fatal("Open below a regular file succeeded")
	}
	// Nothing listens on port 1.
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, dsn := range []string{"postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "postgresql://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"} {
		if db, err := Open(c, dsn); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
}

func TestOpenPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	db := openT(t, dsn)
	if db.Dialect != Postgres {
		t.Fatalf("Dialect = %s", db.Dialect)
	}
	alt := openT(t, "postgresql://"+strings.TrimPrefix(dsn, "postgres://"))
	if alt.Dialect != Postgres {
		t.Fatalf("postgresql:// Dialect = %s", alt.Dialect)
	}
	if err := alt.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestInTx(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		if _, err := db.Exec(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		count := func() int {
			var n int
			if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		// fn's error rolls everything back and is returned unwrapped.
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *Tx) error {
			if tx.Dialect() != db.Dialect {
				t.Errorf("tx.Dialect = %s", tx.Dialect())
			}
			if _, err := tx.Exec(ctx, `INSERT INTO t (id, v) VALUES (?, ?)`, 1, "a"); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM t WHERE v = ?`, "a").Scan(&n); err != nil || n != 1 {
				t.Errorf("inside tx: count %d, %v", n, err)
			}
			return boom
		})
		if err != boom {
			t.Fatalf("InTx error = %v, want fn's error itself", err)
		}
		if n := count(); n != 0 {
			t.Fatalf("%d rows after rollback", n)
		}

		// A failing statement rolls back earlier ones.
		err = db.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO t (id, v) VALUES (?, ?)`, 2, "b"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO t (id, v) VALUES (?, ?)`, 2, "dup")
			return err
		})
		if !IsUniqueViolation(err) {
			t.Fatalf("InTx error = %v, want the unique violation", err)
		}
		if n := count(); n != 0 {
			t.Fatalf("%d rows after failed statement", n)
		}

		// nil commits.
		err = db.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO t (id, v) VALUES (?, ?), (?, ?)`, 3, "c", 4, "d"); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT v FROM t ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					return err
				}
				got = append(got, v)
			}
			if strings.Join(got, ",") != "c,d" {
				t.Errorf("tx.Query = %v", got)
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 2 {
			t.Fatalf("%d rows after commit, want 2", n)
		}

		// The pool is usable after a rollback (no leaked transaction).
		for range 3 {
			_ = db.InTx(ctx, func(*Tx) error { return boom })
		}
		if _, err := db.Exec(ctx, `INSERT INTO t (id, v) VALUES (?, ?)`, 5, "e"); err != nil {
			t.Fatal(err)
		}
		// A cancelled context fails to begin.
		cc, cancel := context.WithCancel(ctx)
		cancel()
		called := false
		if err := db.InTx(cc, func(*Tx) error { called = true; return nil }); err == nil || called {
			t.Fatalf("InTx with a cancelled context: %v, fn called %v", err, called)
		}
	})
}

// LockKey serialises transactions naming the same key on PostgreSQL, and is
// a no-op on SQLite (whose write transactions are exclusive anyway).
func TestLockKey(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		if _, err := db.Exec(ctx, `CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO c (id, n) VALUES (1, 0)`); err != nil {
			t.Fatal(err)
		}
		// Read-modify-write with a pause in between: lost updates appear
		// unless the transactions are serialised.
		const workers, rounds = 6, 5
		var inside, maxInside atomic.Int32
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range rounds {
					err := db.InTx(ctx, func(tx *Tx) error {
						if err := tx.LockKey(ctx, "test.counter"); err != nil {
							return err
						}
						cur := inside.Add(1)
						defer inside.Add(-1)
						for {
							m := maxInside.Load()
							if cur <= m || maxInside.CompareAndSwap(m, cur) {
								break
							}
						}
						var n int
						if err := tx.QueryRow(ctx, `SELECT n FROM c WHERE id = 1`).Scan(&n); err != nil {
							return err
						}
						time.Sleep(2 * time.Millisecond)
						_, err := tx.Exec(ctx, `UPDATE c SET n = ? WHERE id = 1`, n+1)
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		var n int
		if err := db.QueryRow(ctx, `SELECT n FROM c WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != workers*rounds {
			t.Fatalf("counter = %d, want %d (lost updates)", n, workers*rounds)
		}
		if maxInside.Load() != 1 {
			t.Fatalf("%d transactions held the lock at once", maxInside.Load())
		}
	})
}

func TestLockKeyDistinctKeys(t *testing.T) {
	db := postgresDB(t)
	// Two different keys do not block each other: a holds "a" while b
	// takes "b" and commits.
	locked := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- db.InTx(ctx, func(tx *Tx) error {
			if err := tx.LockKey(ctx, "test.a"); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.InTx(c, func(tx *Tx) error { return tx.LockKey(c, "test.b") }); err != nil {
		t.Fatalf("a different key blocked: %v", err)
	}
	// The same key does block until a ends.
	c2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if err := db.InTx(c2, func(tx *Tx) error { return tx.LockKey(c2, "test.a") }); err == nil {
		t.Fatal("the same key was taken while held")
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.LockKey(ctx, "test.a") }); err != nil {
		t.Fatalf("key not released at commit: %v", err)
	}
}

// ---- Migrate ----

func migFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, body := range files {
		m[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return m
}

func both(name, body string) map[string]string {
	return map[string]string{"sqlite/" + name: body, "postgres/" + name: body}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func recorded(t *testing.T, db *DB, product string) []string {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT version || '_' || name FROM schema_migrations WHERE product = ? ORDER BY version`, product)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func tableExists(t *testing.T, db *DB, name string) bool {
	t.Helper()
	_, err := db.Exec(ctx, `SELECT 1 FROM `+name+` WHERE 1 = 0`)
	return err == nil
}

func TestMigrate(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		v1 := merge(
			both("20260101000000_first.sql", `CREATE TABLE a (id INTEGER PRIMARY KEY); INSERT INTO a (id) VALUES (1);`),
			// Version order, not file order of creation, decides: b needs a.
			both("20260102000000_second.sql", `CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id)); INSERT INTO b (id, a_id) VALUES (1, 1);`),
			map[string]string{"sqlite/README.md": "ignored", "postgres/notes.txt": "ignored"},
		)
		if err := Migrate(ctx, db, "p", migFS(v1)); err != nil {
			t.Fatal(err)
		}
		want := []string{"20260101000000_first", "20260102000000_second"}
		if got := recorded(t, db, "p"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("recorded %v, want %v", got, want)
		}
		// Idempotent.
		for range 2 {
			if err := Migrate(ctx, db, "p", migFS(v1)); err != nil {
				t.Fatalf("second Migrate: %v", err)
			}
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM a`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("a has %d rows (%v): a migration ran twice", n, err)
		}
		// A later file applies on its own.
		v2 := merge(v1, both("20260103000000_third.sql", `CREATE TABLE c (id INTEGER PRIMARY KEY);`))
		if err := Migrate(ctx, db, "p", migFS(v2)); err != nil {
			t.Fatal(err)
		}
		if got := recorded(t, db, "p"); len(got) != 3 || !tableExists(t, db, "c") {
			t.Fatalf("after v2: %v", got)
		}
		// An older binary refuses the newer database.
		if err := Migrate(ctx, db, "p", migFS(v1)); err == nil || !strings.Contains(err.Error(), "20260103000000") {
			t.Fatalf("older migrations on a newer database: %v", err)
		}
		// Products are independent.
		other := both("20250101000000_o.sql", `CREATE TABLE o (id INTEGER PRIMARY KEY);`)
		if err := Migrate(ctx, db, "q", migFS(other)); err != nil {
			t.Fatalf("other product: %v", err)
		}
		if got := recorded(t, db, "q"); len(got) != 1 {
			t.Fatalf("product q recorded %v", got)
		}
		if err := Migrate(ctx, db, "p", migFS(v2)); err != nil {
			t.Fatalf("p after q: %v", err)
		}
	})
}

func TestMigrateFailureRollsBack(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		files := merge(
			both("1_ok.sql", `CREATE TABLE ok1 (id INTEGER PRIMARY KEY);`),
			both("2_bad.sql", `CREATE TABLE ok2 (id INTEGER PRIMARY KEY); THIS IS NOT SQL;`),
		)
		err := Migrate(ctx, db, "p", migFS(files))
		if err == nil || !strings.Contains(err.Error(), "2_bad") {
			t.Fatalf("Migrate with a broken file: %v", err)
		}
		// The whole run is one transaction: not even the bookkeeping table
		// of a first run survives its failure.
		if tableExists(t, db, "schema_migrations") {
			if got := recorded(t, db, "p"); len(got) != 0 {
				t.Fatalf("recorded %v after a failed run", got)
			}
		}
		if tableExists(t, db, "ok2") {
			t.Fatal("the failed migration's first statement was kept")
		}
		if tableExists(t, db, "ok1") {
			t.Fatal("an earlier migration of the failed run was kept without its record")
		}
		// Fixed file: everything applies.
		files = merge(files, both("2_bad.sql", `CREATE TABLE ok2 (id INTEGER PRIMARY KEY);`))
		if err := Migrate(ctx, db, "p", migFS(files)); err != nil {
			t.Fatal(err)
		}
		if !tableExists(t, db, "ok1") || !tableExists(t, db, "ok2") {
			t.Fatal("tables missing after the fixed run")
		}
	})
}

func TestMigrateBadFiles(t *testing.T) {
	db := sqliteDB(t)
	if err := Migrate(ctx, db, "good", migFS(both("1_a.sql", "CREATE TABLE a (id INTEGER);"))); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		files map[string]string
		msg   string
	}{
		"no underscore":     {map[string]string{"sqlite/20260101.sql": "SELECT 1;"}, "not named"},
		"empty version":     {map[string]string{"sqlite/_init.sql": "SELECT 1;"}, "not named"},
		"duplicate version": {map[string]string{"sqlite/1_a.sql": "SELECT 1;", "sqlite/1_b.sql": "SELECT 1;"}, "duplicate"},
		"no dialect dir":    {map[string]string{"postgres/1_a.sql": "SELECT 1;"}, "sqlite"},
	}
	for name, tc := range cases {
		err := Migrate(ctx, db, "bad", migFS(tc.files))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: Migrate error %v, want one mentioning %q", name, err, tc.msg)
		}
	}
	if got := recorded(t, db, "bad"); len(got) != 0 {
		t.Fatalf("recorded %v for bad file sets", got)
	}
}

// Replicas may start at the same time: concurrent Migrate calls on one
// fresh database all succeed and apply each file once.
func TestMigrateConcurrent(t *testing.T) {
	run := func(t *testing.T, dsn string) {
		files := merge(
			both("1_a.sql", `CREATE TABLE a (id INTEGER PRIMARY KEY); INSERT INTO a (id) VALUES (1);`),
			both("2_b.sql", `CREATE TABLE b (id INTEGER PRIMARY KEY);`),
		)
		const n = 4
		dbs := make([]*DB, n)
		for i := range n {
			dbs[i] = openT(t, dsn)
		}
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = Migrate(ctx, dbs[i], "p", migFS(files))
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		}
		var c int
		if err := dbs[0].QueryRow(ctx, `SELECT COUNT(*) FROM a`).Scan(&c); err != nil || c != 1 {
			t.Fatalf("a has %d rows, %v", c, err)
		}
		if got := recorded(t, dbs[0], "p"); len(got) != 2 {
			t.Fatalf("recorded %v", got)
		}
	}
	t.Run("sqlite", func(t *testing.T) { run(t, filepath.Join(t.TempDir(), "m.db")) })
	t.Run("postgres", func(t *testing.T) {
		run(t, testenv.Postgres(t))
	})
}

// A panic inside fn must not leave the transaction open: on SQLite the
// single write connection would stay taken and every later write would
// block (HTTP middleware recovers handler panics, so the process lives on).
func TestInTxPanicReleases(t *testing.T) {
	dialects(t, func(t *testing.T, db *DB) {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic was swallowed")
				}
			}()
			_ = db.InTx(ctx, func(*Tx) error { panic("boom") })
		}()
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := db.InTx(c, func(tx *Tx) error {
			_, err := tx.Exec(c, `CREATE TABLE after_panic (id INTEGER)`)
			return err
		}); err != nil {
			t.Fatalf("write after a recovered panic: %v", err)
		}
	})
}
