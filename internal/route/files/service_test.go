package files_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/files"
	"github.com/omniedge/omni/internal/route/llm"
)

// fixture is a Service over one database and directory, on a fake clock.
type fixture struct {
	s     *files.Service
	dir   *files.Dir
	clk   *clock.Fake
	quota *memSettings
}

// memSettings is the stored settings in memory.
type memSettings struct{ m map[string]string }

func (m *memSettings) Setting(_ context.Context, key string) (string, bool, error) {
	v, ok := m.m[key]
	return v, ok, nil
}

func (m *memSettings) SetSetting(_ context.Context, key, value string) error {
	m.m[key] = value
	return nil
}

type opener func(t *testing.T) *sqldb.DB

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqldb.Migrate(ctx, db, "route_files", files.Migrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

func newFixture(t *testing.T, open opener) *fixture {
	t.Helper()
	dir, err := files.NewDir(filepath.Join(t.TempDir(), "files"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, clk: clock.NewFake(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)), quota: &memSettings{m: map[string]string{}}}
	f.s, err = files.New(files.Options{DB: open(t), Storage: dir, Settings: f.quota, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) put(t *testing.T, owner, purpose, content string) string {
	t.Helper()
	f.clk.Advance(time.Millisecond)
	id, err := f.s.Put(ctx, owner, purpose, "f.jsonl", strings.NewReader(content))
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	return id
}

func (f *fixture) objects(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(f.dir.Path())
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func read(t *testing.T, f *fixture, owner, id string) (string, error) {
	t.Helper()
	rc, err := f.s.Open(ctx, owner, id)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestServiceSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T) *sqldb.DB { return openDB(t, filepath.Join(t.TempDir(), "omni.db")) })
}

func TestServicePostgres(t *testing.T) {
	testenv.Postgres(t)
	runSuite(t, func(t *testing.T) *sqldb.DB { return openDB(t, testenv.Postgres(t)) })
}

// runSuite is the service's behaviour on one database; each subtest
// gets a fresh one.
func runSuite(t *testing.T, open opener) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"PutOpenScoped", testPutOpenScoped},
		{"Expiry", testExpiry},
		{"RunSweeps", testRunSweeps},
		{"SweepOrphans", testSweepOrphans},
		{"Delete", testDelete},
		{"ListPages", testListPages},
		{"QuotaCount", testQuotaCount},
		{"QuotaBytes", testQuotaBytes},
		{"QuotaConcurrent", testQuotaConcurrent},
		{"BadInput", testBadInput},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newFixture(t, open)) })
	}
}

// A file is its owner's: another owner opens, reads and deletes nothing
// of it, and the error is the one of a missing file.
func testPutOpenScoped(t *testing.T, f *fixture) {
	id := f.put(t, "k1", files.PurposeBatchOutput, "out\n")
	if got, err := read(t, f, "k1", id); err != nil || got != "out\n" {
		t.Fatalf("read: %q, %v", got, err)
	}
	for _, who := range []string{"k2", ""} {
		if _, err := f.s.Open(ctx, who, id); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("owner %q opened k1's file: %v", who, err)
		}
		if err := f.s.Delete(ctx, who, id); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("owner %q deleted k1's file: %v", who, err)
		}
		if fs, _, err := f.s.List(ctx, files.ListQuery{Owner: who}); err != nil || len(fs) != 0 {
			t.Fatalf("owner %q lists %v, %v", who, fs, err)
		}
	}
	if _, err := f.s.Open(ctx, "k1", "file-missing"); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if got, err := read(t, f, "k1", id); err != nil || got != "out\n" {
		t.Fatalf("read after the others tried: %q, %v", got, err)
	}
}

// Batch files expire after 30 days: from then on they are missing, and
// the sweep removes their content; files of other purposes stay.
func testExpiry(t *testing.T, f *fixture) {
	batch := f.put(t, "k1", files.PurposeBatch, "in\n")
	keep := f.put(t, "k1", files.PurposeUserData, "keep")
	got, err := f.s.Get(ctx, "k1", batch)
	if err != nil || !got.Expires.Equal(got.Created.Add(files.BatchExpiry)) {
		t.Fatalf("batch file %+v, %v", got, err)
	}
	f.clk.Advance(files.BatchExpiry - time.Second)
	if n, err := f.s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	if _, err := read(t, f, "k1", batch); err != nil {
		t.Fatalf("read before expiry: %v", err)
	}
	f.clk.Advance(time.Second)
	if _, err := f.s.Open(ctx, "k1", batch); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("expired file opened: %v", err)
	}
	if n := f.objects(t); n != 2 {
		t.Fatalf("%d objects before the sweep, want 2", n)
	}
	if n, err := f.s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want 1", n, err)
	}
	if n := f.objects(t); n != 1 {
		t.Fatalf("%d objects after the sweep, want 1", n)
	}
	if got, err := read(t, f, "k1", keep); err != nil || got != "keep" {
		t.Fatalf("file without expiry: %q, %v", got, err)
	}
}

func testDelete(t *testing.T, f *fixture) {
	id := f.put(t, "k1", files.PurposeUserData, "x")
	if err := f.s.Delete(ctx, "k1", id); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Delete(ctx, "k1", id); !errors.Is(err, files.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if n := f.objects(t); n != 0 {
		t.Fatalf("%d objects after delete", n)
	}
}

// Pages follow created_at (newest first by default), filter by purpose
// and continue past after; has_more says whether another page follows.
func testListPages(t *testing.T, f *fixture) {
	var ids []string
	for i := range 5 {
		purpose := files.PurposeBatch
		if i%2 == 1 {
			purpose = files.PurposeUserData
		}
		ids = append(ids, f.put(t, "k1", purpose, fmt.Sprint(i)))
	}
	f.put(t, "k2", files.PurposeBatch, "other")
	collect := func(q files.ListQuery) (out []string) {
		q.Owner = "k1"
		for range 10 {
			fs, more, err := f.s.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range fs {
				out = append(out, x.ID)
			}
			if !more {
				return out
			}
			q.After = fs[len(fs)-1].ID
		}
		t.Fatal("more than 10 pages")
		return nil
	}
	rev := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if got := collect(files.ListQuery{Limit: 2}); fmt.Sprint(got) != fmt.Sprint(rev) {
		t.Fatalf("desc pages %v, want %v", got, rev)
	}
	if got := collect(files.ListQuery{Limit: 2, Asc: true}); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("asc pages %v, want %v", got, ids)
	}
	want := []string{ids[0], ids[2], ids[4]}
	if got := collect(files.ListQuery{Limit: 1, Asc: true, Purpose: files.PurposeBatch}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batch pages %v, want %v", got, want)
	}
	if _, _, err := f.s.List(ctx, files.ListQuery{Owner: "k2", After: ids[0]}); status(err) != http.StatusBadRequest {
		t.Fatalf("after naming another key's file: %v", err)
	}
}

func status(err error) int {
	var e *llm.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// A key holds at most the stored count of files; the next upload is
// refused and leaves nothing behind; another key is not affected.
func testQuotaCount(t *testing.T, f *fixture) {
	f.quota.m[files.SettingMaxPerKey] = "2"
	f.put(t, "k1", files.PurposeUserData, "a")
	f.put(t, "k1", files.PurposeUserData, "b")
	if _, err := f.s.Put(ctx, "k1", files.PurposeUserData, "c", strings.NewReader("c")); status(err) != http.StatusForbidden {
		t.Fatalf("third file: %v", err)
	}
	f.put(t, "k2", files.PurposeUserData, "a")
	if n := f.objects(t); n != 3 {
		t.Fatalf("%d objects, want 3", n)
	}
}

// A key's files take at most the stored bytes, and every key's the
// stored total; what passes is refused and leaves nothing behind.
func testQuotaBytes(t *testing.T, f *fixture) {
	f.quota.m[files.SettingMaxKeyBytes] = "10"
	f.quota.m[files.SettingMaxTotalBytes] = "15"
	f.put(t, "k1", files.PurposeUserData, "123456")
	if _, err := f.s.Put(ctx, "k1", files.PurposeUserData, "c", strings.NewReader("12345")); status(err) != http.StatusForbidden {
		t.Fatalf("past the key's bytes: %v", err)
	}
	f.put(t, "k2", files.PurposeUserData, "123456789")
	if _, err := f.s.Put(ctx, "k3", files.PurposeUserData, "c", strings.NewReader("1")); status(err) != http.StatusForbidden {
		t.Fatalf("past the total: %v", err)
	}
	if n := f.objects(t); n != 2 {
		t.Fatalf("%d objects, want 2", n)
	}
}

func testBadInput(t *testing.T, f *fixture) {
	for _, tc := range []struct{ purpose, name string }{
		{"nonsense", "a"}, {"", "a"}, {files.PurposeBatch, ""}, {files.PurposeBatch, strings.Repeat("a", files.MaxFilename+1)},
		{files.PurposeBatch, "a\nb"}, {files.PurposeBatch, "\xff"},
	} {
		if _, err := f.s.Put(ctx, "k1", tc.purpose, tc.name, strings.NewReader("x")); status(err) != http.StatusBadRequest {
			t.Errorf("purpose %q name %q: %v", tc.purpose, tc.name, err)
		}
	}
	if n := f.objects(t); n != 0 {
		t.Fatalf("%d objects after bad input", n)
	}
}

// Concurrent uploads of one key cannot pass its quota together: the
// count is checked again, under a lock, as each file is recorded, and
// the files refused leave nothing behind.
func testQuotaConcurrent(t *testing.T, f *fixture) {
	f.quota.m[files.SettingMaxPerKey] = "3"
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := f.s.Put(ctx, "k1", files.PurposeUserData, "c", strings.NewReader(fmt.Sprint(i)))
			errs <- err
		}()
	}
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case status(err) != http.StatusForbidden:
			t.Fatalf("upload: %v", err)
		}
	}
	if ok != 3 || f.objects(t) != 3 {
		t.Fatalf("%d uploads stored, %d objects; want 3 and 3", ok, f.objects(t))
	}
}

// The module's background loop sweeps what expired as it starts (and
// then every SweepInterval), on the service's clock.
func testRunSweeps(t *testing.T, f *fixture) {
	f.put(t, "k1", files.PurposeBatch, "in\n")
	f.clk.Advance(files.BatchExpiry)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.s.Run(runCtx) }()
	testenv.Eventually(t, "the expired file is swept", func() bool { return f.objects(t) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Content that no metadata names (a crash between storing and
// recording) and cut-off writes are removed once a day old; recorded
// files and young content stay.
func testSweepOrphans(t *testing.T, f *fixture) {
	kept := f.put(t, "k1", files.PurposeUserData, "kept")
	for _, name := range []string{"file-orphan", "file-young"} {
		if _, err := f.dir.Put(ctx, name, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir.Path(), ".upload-cut"), []byte("par"), 0o600); err != nil {
		t.Fatal(err)
	}
	old, young := f.clk.Now().Add(-25*time.Hour), f.clk.Now().Add(-time.Hour)
	for name, at := range map[string]time.Time{"file-orphan": old, kept: old, "file-young": young, ".upload-cut": old} {
		if err := os.Chtimes(filepath.Join(f.dir.Path(), name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := f.s.SweepOrphans(ctx); err != nil || n != 1 {
		t.Fatalf("orphans swept: %d, %v; want 1", n, err)
	}
	if _, err := f.dir.Open(ctx, "file-orphan"); !errors.Is(err, files.ErrNoObject) {
		t.Fatalf("the orphan is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir.Path(), ".upload-cut")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a cut-off write is still there: %v", err)
	}
	if got, err := read(t, f, "k1", kept); err != nil || got != "kept" {
		t.Fatalf("recorded file: %q, %v", got, err)
	}
	if _, err := f.dir.Open(ctx, "file-young"); err != nil {
		t.Fatalf("young content removed: %v", err)
	}
}
