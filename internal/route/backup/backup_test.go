package backup_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/backup"
	"github.com/omniedge/omni/internal/route/routetest"
	"github.com/omniedge/omni/internal/route/store"
)

var masterKey = []byte("0123456789abcdef0123456789abcdef")

// upstream is a fake OpenAI-compatible provider recording the models asked for.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	models []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		u.mu.Lock()
		u.models = append(u.models, body.Model)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, body.Model)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.models) == 0 {
		return ""
	}
	return u.models[len(u.models)-1]
}

type env struct {
	t   *testing.T
	db  *sqldb.DB
	dir string // data dir
	srv *httptest.Server
	up  *upstream
	c   *http.Client // logged in
}

func sqliteDSN(t *testing.T) string { return filepath.Join(t.TempDir(), "omni.db") }

// newEnv is a gateway with management over dsn and a config-declared
// provider "up" (a fake upstream); the test client is logged in.
func newEnv(t *testing.T, dsn string) *env {
	t.Helper()
	if dsn == "" {
		return nil
	}
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	up := newUpstream(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = dashboardPassword
	cfg.Route.Providers = []config.RouteProvider{{ID: "up", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-up"}, Models: []string{"model-a", "model-b"}}}
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: masterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return &env{t: t, db: db, dir: cfg.DataDir, srv: srv, up: up, c: routetest.Login(t, srv.URL, dashboardPassword)}
}

const dashboardPassword = "backup test dashboard"

// resp is a whole answer.
type resp = routetest.Resp

// do sends a request; body is []byte or string (sent as is), or a value
// encoded as JSON. hdr adds headers in pairs.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := routetest.Send(e.t, e.c, method, e.srv.URL+path, body, hdr...)
	return r
}

func (e *env) must(status int, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.Status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, status, r.Body)
	}
	return r
}

func (e *env) setAlias(name, target string) {
	e.t.Helper()
	r := e.do("PUT", "/api/models/alias", map[string]any{"name": name, "target": target})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		e.t.Fatalf("set alias %s: status %d: %s", name, r.Status, r.Body)
	}
}

// aliases returns name → target of the stored aliases.
func (e *env) aliases() map[string]string {
	e.t.Helper()
	var v struct {
		Aliases []struct{ Name, Target string }
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "GET", "/api/models/alias", nil).Body, &v); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range v.Aliases {
		out[a.Name] = a.Target
	}
	return out
}

// chat sends one chat request for model and returns the model the
// upstream was asked for.
func (e *env) chat(model string) string {
	e.t.Helper()
	e.must(http.StatusOK, "POST", "/v1/chat/completions", map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": "hi"}}})
	return e.up.last()
}

func (e *env) create() backup.Entry {
	e.t.Helper()
	var got backup.Entry
	if err := json.Unmarshal(e.must(http.StatusCreated, "PUT", "/api/db-backups", nil).Body, &got); err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *env) list() []backup.Entry {
	e.t.Helper()
	var v struct {
		Backups []backup.Entry
	}
	if err := json.Unmarshal(e.must(http.StatusOK, "GET", "/api/db-backups", nil).Body, &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Backups
}

func runBoth(t *testing.T, fn func(t *testing.T, dsn func(*testing.T) string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteDSN) })
	t.Run("postgres", func(t *testing.T) { fn(t, func(t *testing.T) string { return testenv.Postgres(t) }) })
}

func TestCreateListRestore(t *testing.T) {
	runBoth(t, func(t *testing.T, dsn func(*testing.T) string) {
		e := newEnv(t, dsn(t))
		if e == nil {
			return
		}
		e.setAlias("fast", "up/model-a")
		e.setAlias("keep", "up/model-a")
		if got := e.chat("fast"); got != "model-a" {
			t.Fatalf("before backup: upstream asked for %q", got)
		}
		b := e.create()
		if b.Kind != backup.KindManual || b.Size <= 0 || b.ID != b.Filename || !strings.HasPrefix(b.ID, "omni-") || time.Since(b.CreatedAt) > time.Minute {
			t.Fatalf("created entry = %+v", b)
		}
		if _, err := os.Stat(filepath.Join(e.dir, "backups", b.ID)); err != nil {
			t.Fatalf("backup file not in <data>/backups: %v", err)
		}
		if l := e.list(); len(l) != 1 || l[0] != b {
			t.Fatalf("list = %+v, want [%+v]", l, b)
		}

		// Change the state after the backup.
		e.setAlias("fast", "up/model-b")
		e.setAlias("later", "up/model-b")
		e.must(http.StatusNoContent, "DELETE", "/api/models/alias/keep", nil)
		if got := e.chat("fast"); got != "model-b" {
			t.Fatalf("after change: upstream asked for %q", got)
		}

		r := e.must(http.StatusOK, "POST", "/api/db-backups", map[string]any{"id": b.ID})
		if !strings.Contains(string(r.Body), `"route_aliases"`) {
			t.Fatalf("restore answer lacks the table counts: %s", r.Body)
		}
		want := map[string]string{"fast": "up/model-a", "keep": "up/model-a"}
		if got := e.aliases(); !equalMaps(got, want) {
			t.Fatalf("aliases after restore = %v, want %v", got, want)
		}
		// The running gateway serves the restored state at once.
		if got := e.chat("fast"); got != "model-a" {
			t.Fatalf("after restore: upstream asked for %q, want model-a", got)
		}
		e.must(http.StatusNotFound, "POST", "/v1/chat/completions", map[string]any{"model": "later", "messages": []map[string]any{{"role": "user", "content": "hi"}}})

		// By filename too; the backup is still listed after a restore.
		e.setAlias("later", "up/model-b")
		e.must(http.StatusOK, "POST", "/api/db-backups", map[string]any{"filename": b.Filename})
		if _, ok := e.aliases()["later"]; ok {
			t.Fatal("restore by filename kept an alias made after the backup")
		}
		if l := e.list(); len(l) != 1 {
			t.Fatalf("list after restore = %+v", l)
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestBadIDs(t *testing.T) {
	e := newEnv(t, sqliteDSN(t))
	for _, id := range []string{"../x", "../omni.db", "/etc/passwd", "omni-20260101T000000.000Z.sqlite/../../omni.db", "omni.db", ".snapshot-1.sqlite"} {
		r := e.do("POST", "/api/db-backups", map[string]any{"id": id})
		if r.Status != http.StatusBadRequest {
			t.Errorf("restore %q: status %d, want 400: %s", id, r.Status, r.Body)
		}
	}
	e.must(http.StatusBadRequest, "DELETE", "/api/db-backups/..%2Fomni.db", nil)
	e.must(http.StatusBadRequest, "POST", "/api/db-backups", map[string]any{})
	e.must(http.StatusBadRequest, "POST", "/api/db-backups", "{not json")
	e.must(http.StatusNotFound, "POST", "/api/db-backups", map[string]any{"id": "omni-20200101T000000.000Z.sqlite"})
	e.must(http.StatusNotFound, "DELETE", "/api/db-backups/omni-20200101T000000.000Z.sqlite", nil)
	// The database next to the backups is untouched.
	if _, err := os.Stat(filepath.Join(e.dir, "backups")); err == nil {
		if l := e.list(); len(l) != 0 {
			t.Fatalf("list = %+v", l)
		}
	}
}

func TestRetentionAndDelete(t *testing.T) {
	e := newEnv(t, sqliteDSN(t))
	e.must(http.StatusBadRequest, "PUT", "/api/db-backups/settings", map[string]any{"max_backups": 0})
	if r := e.must(http.StatusOK, "GET", "/api/db-backups/settings", nil).Object(t); r["max_backups"] != float64(backup.DefaultMaxBackups) || r["auto_backup"] != false {
		t.Fatalf("default settings = %v", r)
	}
	e.must(http.StatusOK, "PUT", "/api/db-backups/settings", map[string]any{"max_backups": 3})
	var made []string
	for range 5 {
		made = append(made, e.create().ID)
	}
	l := e.list()
	var ids []string
	for _, b := range l {
		ids = append(ids, b.ID)
	}
	want := []string{made[4], made[3], made[2]}
	if !slices.Equal(ids, want) {
		t.Fatalf("kept %v, want the newest three %v", ids, want)
	}
	for _, old := range made[:2] {
		if _, err := os.Stat(filepath.Join(e.dir, "backups", old)); !os.IsNotExist(err) {
			t.Fatalf("old backup %s still on disk (%v)", old, err)
		}
	}
	// Lowering the limit prunes at once.
	e.must(http.StatusOK, "PATCH", "/api/db-backups/settings", map[string]any{"max_backups": 1})
	if l := e.list(); len(l) != 1 || l[0].ID != made[4] {
		t.Fatalf("after max_backups=1: %+v", l)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/db-backups/"+made[4], nil)
	if l := e.list(); len(l) != 0 {
		t.Fatalf("after delete: %+v", l)
	}
}

// openFile opens a downloaded SQLite file for inspection.
func openFile(t *testing.T, b []byte) *sql.DB {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.sqlite")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *sql.DB, q string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func TestExportImport(t *testing.T) {
	runBoth(t, func(t *testing.T, dsn func(*testing.T) string) {
		e := newEnv(t, dsn(t))
		if e == nil {
			return
		}
		ctx := context.Background()
		// Another product's table and a dashboard session: neither leaves in an export.
		if _, err := e.db.Exec(ctx, `CREATE TABLE other_product_secrets (v TEXT)`); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Exec(ctx, `INSERT INTO other_product_secrets (v) VALUES ('top secret')`); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Exec(ctx, `INSERT INTO route_sessions (id, created_at, expires_at) VALUES ('sess-1', 1, 9999999999999)`); err != nil {
			t.Fatal(err)
		}
		e.setAlias("fast", "up/model-a")

		r := e.must(http.StatusOK, "GET", "/api/db-backups/export", nil)
		if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, ".sqlite") {
			t.Fatalf("Content-Disposition = %q", cd)
		}
		if !bytes.HasPrefix(r.Body, []byte("SQLite format 3\x00")) {
			t.Fatalf("export is not a SQLite file: %q", r.Body[:min(32, len(r.Body))])
		}
		export := r.Body
		f := openFile(t, export)
		var ok string
		if err := f.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check = %q, %v", ok, err)
		}
		if n := count(t, f, `SELECT COUNT(*) FROM route_aliases WHERE name = 'fast' AND target = 'up/model-a'`); n != 1 {
			t.Fatalf("export has %d matching aliases", n)
		}
		if n := count(t, f, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'other_product_secrets'`); n != 0 {
			t.Fatal("export carries another product's table")
		}
		if n := count(t, f, `SELECT COUNT(*) FROM route_sessions`); n != 0 {
			t.Fatal("export carries dashboard sessions")
		}
		if n := count(t, f, `SELECT COUNT(*) FROM schema_migrations WHERE product = 'route'`); n == 0 {
			t.Fatal("export has no migration records")
		}
		f.Close()

		// Change, then import the export (raw body): the change is gone.
		e.setAlias("fast", "up/model-b")
		e.setAlias("later", "up/model-b")
		e.must(http.StatusOK, "POST", "/api/db-backups/import", export, "Content-Type", "application/vnd.sqlite3")
		if got := e.aliases(); !equalMaps(got, map[string]string{"fast": "up/model-a"}) {
			t.Fatalf("aliases after import = %v", got)
		}
		if got := e.chat("fast"); got != "model-a" {
			t.Fatalf("after import: upstream asked for %q", got)
		}
		// Restore left the live session and the other product alone.
		var n int
		if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM route_sessions WHERE id = 'sess-1'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("live session after import: %d, %v", n, err)
		}
		if err := e.db.QueryRow(ctx, `SELECT COUNT(*) FROM other_product_secrets`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("other product's rows after import: %d, %v", n, err)
		}

		// Multipart upload works the same.
		e.setAlias("later", "up/model-b")
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		_ = mw.WriteField("note", "x")
		fw, _ := mw.CreateFormFile("file", "omni.sqlite")
		fw.Write(export)
		mw.Close()
		e.must(http.StatusOK, "POST", "/api/db-backups/import", mp.Bytes(), "Content-Type", mw.FormDataContentType())
		if _, ok := e.aliases()["later"]; ok {
			t.Fatal("multipart import kept an alias made after the export")
		}
	})
}

func TestImportRejects(t *testing.T) {
	runBoth(t, func(t *testing.T, dsn func(*testing.T) string) {
		e := newEnv(t, dsn(t))
		if e == nil {
			return
		}
		e.setAlias("fast", "up/model-a")
		export := e.must(http.StatusOK, "GET", "/api/db-backups/export", nil).Body
		e.setAlias("fast", "up/model-b") // the state the rejected imports must not touch

		plain := func(setup ...string) []byte {
			p := filepath.Join(t.TempDir(), "x.sqlite")
			db, err := sql.Open("sqlite", p)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range setup {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		// An export whose migration records name a version this binary does not know.
		newer := func() []byte {
			db := openFile(t, export)
			if _, err := db.Exec(`INSERT INTO schema_migrations (product, version, name, applied_at) VALUES ('route', '99991231000000', 'future', 1)`); err != nil {
				t.Fatal(err)
			}
			var p string
			if err := db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&p); err != nil {
				t.Fatal(err)
			}
			db.Close()
			b, _ := os.ReadFile(p)
			return b
		}()
		// An export missing one of the gateway's tables.
		missing := func() []byte {
			db := openFile(t, export)
			if _, err := db.Exec(`DROP TABLE route_aliases`); err != nil {
				t.Fatal(err)
			}
			var p string
			_ = db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&p)
			db.Close()
			b, _ := os.ReadFile(p)
			return b
		}()
		damaged := append([]byte(nil), export...)
		for i := 4096; i < len(damaged); i++ { // keep the header page, wreck the rest
			damaged[i] = 0xA5
		}
		cases := map[string][]byte{
			"empty":                 {},
			"garbage":               bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4096),
			"text":                  []byte("id,name\n1,fast\n"),
			"sqlite without tables": plain(`CREATE TABLE notes (v TEXT)`, `INSERT INTO notes VALUES ('x')`),
			"sqlite with foreign migrations": plain(`CREATE TABLE schema_migrations (product TEXT, version TEXT, name TEXT, applied_at BIGINT)`,
				`INSERT INTO schema_migrations VALUES ('edge', '20261125000000', 'init', 1)`),
			"newer version": newer,
			"missing table": missing,
			"damaged":       damaged,
			"truncated":     export[:len(export)/2],
		}
		for name, body := range cases {
			r := e.do("POST", "/api/db-backups/import", body, "Content-Type", "application/octet-stream")
			if r.Status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400: %s", name, r.Status, r.Body)
				continue
			}
			if msg, _ := r.Object(t)["error"].(map[string]any)["message"].(string); msg == "" {
				t.Errorf("%s: no error message: %s", name, r.Body)
			}
			if got := e.aliases(); !equalMaps(got, map[string]string{"fast": "up/model-b"}) {
				t.Fatalf("%s: aliases changed to %v", name, got)
			}
		}
		var n int
		if err := e.db.QueryRow(context.Background(), `SELECT COUNT(*) FROM route_aliases WHERE target = 'up/model-b'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("database changed by rejected imports: %d, %v", n, err)
		}
		// No temporary file is left behind.
		des, _ := os.ReadDir(filepath.Join(e.dir, "backups"))
		for _, de := range des {
			t.Errorf("left in the backup directory: %s", de.Name())
		}
	})
}

func TestImportTooLarge(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqliteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.New(ctx, db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := backup.New(backup.Options{DB: db, Dir: t.TempDir(), Settings: st, MaxUpload: 1000})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	add := func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) }
	s.Register(add, add)
	srv := httptest.NewServer(httpx.Wrap(mux, logging.Discard(), nil))
	defer srv.Close()
	for _, n := range []int{1001, 5000} {
		res, err := http.Post(srv.URL+"/api/db-backups/import", "application/octet-stream", bytes.NewReader(bytes.Repeat([]byte("x"), n)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d bytes: status %d, want 413", n, res.StatusCode)
		}
	}
}

func TestExportAll(t *testing.T) {
	runBoth(t, func(t *testing.T, dsn func(*testing.T) string) {
		e := newEnv(t, dsn(t))
		if e == nil {
			return
		}
		e.setAlias("fast", "up/model-a")
		e.setAlias("slow", "up/model-b")
		r := e.must(http.StatusOK, "GET", "/api/db-backups/exportAll", nil)
		if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, ".tar.gz") {
			t.Fatalf("Content-Disposition = %q", cd)
		}
		gz, err := gzip.NewReader(bytes.NewReader(r.Body))
		if err != nil {
			t.Fatalf("not gzip: %v", err)
		}
		tr := tar.NewReader(gz)
		files := map[string][]byte{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("tar: %v", err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
		var man backup.Manifest
		if err := json.Unmarshal(files[backup.ArchiveManifest], &man); err != nil {
			t.Fatalf("manifest: %v (%q)", err, files[backup.ArchiveManifest])
		}
		db := files[backup.ArchiveDatabase]
		if man.Format != "omniroute-backup" || man.FormatVersion != 1 || man.SchemaVersion == "" || man.Database != backup.ArchiveDatabase ||
			man.Size != int64(len(db)) || time.Since(man.CreatedAt) > time.Minute || man.Source != string(e.db.Dialect) {
			t.Fatalf("manifest = %+v (db %d bytes)", man, len(db))
		}
		rows := map[string]int64{}
		for _, tc := range man.Tables {
			rows[tc.Name] = tc.Rows
		}
		if rows["route_aliases"] != 2 {
			t.Fatalf("manifest tables = %+v", man.Tables)
		}
		if _, ok := rows["route_providers"]; !ok {
			t.Fatalf("manifest lacks route_providers: %+v", man.Tables)
		}
		f := openFile(t, db)
		if n := count(t, f, `SELECT COUNT(*) FROM route_aliases`); n != 2 {
			t.Fatalf("archived database has %d aliases", n)
		}
	})
}

// TestCrossDialect restores a PostgreSQL export into a SQLite gateway and back.
func TestCrossDialect(t *testing.T) {
	pg := newEnv(t, testenv.Postgres(t))
	if pg == nil {
		return
	}
	lite := newEnv(t, sqliteDSN(t))
	pg.setAlias("fast", "up/model-b")
	lite.must(http.StatusOK, "POST", "/api/db-backups/import", pg.must(http.StatusOK, "GET", "/api/db-backups/export", nil).Body, "Content-Type", "application/octet-stream")
	if got := lite.chat("fast"); got != "model-b" {
		t.Fatalf("sqlite gateway after importing the postgres export: %q", got)
	}
	lite.setAlias("other", "up/model-a")
	pg.must(http.StatusOK, "POST", "/api/db-backups/import", lite.must(http.StatusOK, "GET", "/api/db-backups/export", nil).Body, "Content-Type", "application/octet-stream")
	if got := pg.aliases(); !equalMaps(got, map[string]string{"fast": "up/model-b", "other": "up/model-a"}) {
		t.Fatalf("postgres aliases after importing the sqlite export: %v", got)
	}
}

func TestAutoBackup(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqliteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.New(ctx, db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC))
	s, err := backup.New(backup.Options{DB: db, Dir: filepath.Join(t.TempDir(), "backups"), Settings: st, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if took, err := s.AutoBackup(ctx); err != nil || took {
		t.Fatalf("auto backup while off: %v, %v", took, err)
	}
	if err := s.SetConfig(ctx, backup.Config{MaxBackups: 10, Auto: true}); err != nil {
		t.Fatal(err)
	}
	// A manual backup does not count as the day's automatic one.
	if _, err := s.Create(ctx, backup.KindManual); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	steps := []struct {
		advance time.Duration
		want    bool
	}{{0, true}, {0, false}, {23 * time.Hour, false}, {time.Hour, true}, {time.Minute, false}}
	for i, st := range steps {
		clk.Advance(st.advance)
		took, err := s.AutoBackup(ctx)
		if err != nil || took != st.want {
			t.Fatalf("step %d: took %v, %v; want %v", i, took, err, st.want)
		}
	}
	l, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range l {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []string{backup.KindAutomatic, backup.KindAutomatic, backup.KindManual}) {
		t.Fatalf("kinds newest first = %v", kinds)
	}
	if !strings.HasSuffix(l[0].ID, "-auto.sqlite") || !l[0].CreatedAt.Equal(clk.Now().Add(-time.Minute).Truncate(time.Millisecond)) {
		t.Fatalf("newest = %+v", l[0])
	}
}

// Provider header values that are credentials leave the gateway in no
// backup, export or archive in plaintext: they are sealed under the
// master key like the provider keys.
func TestBackupsHoldNoPlaintextHeaderSecrets(t *testing.T) {
	runBoth(t, func(t *testing.T, dsn func(*testing.T) string) {
		e := newEnv(t, dsn(t))
		if e == nil {
			return
		}
		e.must(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "hdr", "type": "openai", "base_url": e.up.URL,
			"api_key": "sk-provider-key-secret-8888",
			"headers": map[string]string{"Authorization": "Bearer hdr-secret-auth-1111", "X-Api-Key": "hdr-secret-key-2222", "X-Team": "blue-team-visible"}})
		export := e.must(http.StatusOK, "GET", "/api/db-backups/export", nil).Body
		kept := e.create()
		file, err := os.ReadFile(filepath.Join(e.dir, "backups", kept.ID))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"export": export, "kept backup": file} {
			if !bytes.Contains(b, []byte("blue-team-visible")) {
				t.Fatalf("%s lacks the provider's ordinary header", name)
			}
			for _, s := range []string{"hdr-secret", "sk-provider-key-secret"} {
				if bytes.Contains(b, []byte(s)) {
					t.Fatalf("%s holds %q in plaintext", name, s)
				}
			}
		}
		// Restored, the provider works with its header.
		e.must(http.StatusOK, "POST", "/api/db-backups", map[string]string{"id": kept.ID})
		if h := e.must(http.StatusOK, "GET", "/api/providers/hdr", nil).Object(t)["headers"].(map[string]any); h["X-Team"] != "blue-team-visible" || h["Authorization"] == "Bearer hdr-secret-auth-1111" || h["Authorization"] == "" {
			t.Fatalf("headers after restore: %v", h)
		}
	})
}

// The import takes a file, but not from a web page of another site: a
// multipart form is what a cross-site page can post without asking.
func TestImportRefusesOtherSites(t *testing.T) {
	e := newEnv(t, sqliteDSN(t))
	export := e.must(http.StatusOK, "GET", "/api/db-backups/export", nil).Body
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("file", "omni.sqlite")
	fw.Write(export)
	mw.Close()
	e.must(http.StatusForbidden, "POST", "/api/db-backups/import", mp.Bytes(), "Content-Type", mw.FormDataContentType(), "Origin", "https://evil.example")
	e.must(http.StatusForbidden, "POST", "/api/db-backups/import", mp.Bytes(), "Content-Type", mw.FormDataContentType(), "Sec-Fetch-Site", "cross-site")
	e.must(http.StatusUnsupportedMediaType, "POST", "/api/db-backups/import", export, "Content-Type", "text/plain")
	e.must(http.StatusOK, "POST", "/api/db-backups/import", mp.Bytes(), "Content-Type", mw.FormDataContentType(), "Origin", e.srv.URL)
}

// Only the import takes a file's body types: the other backup routes
// (restore, create, settings) take JSON, so a multipart form or a raw
// body — which a page of another site can post without a preflight —
// is a 415 there and never reaches them.
func TestOnlyTheImportTakesFiles(t *testing.T) {
	e := newEnv(t, sqliteDSN(t))
	list := e.must(http.StatusOK, "GET", "/api/db-backups", nil).Object(t)
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("id", "x")
	mw.Close()
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/db-backups"},
		{"PUT", "/api/db-backups"},
		{"PUT", "/api/db-backups/settings"},
		{"PATCH", "/api/db-backups/settings"},
	} {
		e.must(http.StatusUnsupportedMediaType, c.method, c.path, mp.Bytes(), "Content-Type", mw.FormDataContentType())
		for _, ct := range []string{"application/octet-stream", "application/vnd.sqlite3", "application/x-sqlite3"} {
			e.must(http.StatusUnsupportedMediaType, c.method, c.path, []byte("{}"), "Content-Type", ct)
		}
	}
	// Nothing was created or changed.
	if after := e.must(http.StatusOK, "GET", "/api/db-backups", nil).Object(t); fmt.Sprint(after) != fmt.Sprint(list) {
		t.Fatalf("backups before %v, after %v", list, after)
	}
}
