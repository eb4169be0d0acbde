package store_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/store/migrations"
)

var ctx = context.Background()

var masterKey = []byte("0123456789abcdef0123456789abcdef")

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t *testing.T, db *sqldb.DB, key []byte) *store.Store {
	t.Helper()
	s, err := store.New(ctx, db, key)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	return s
}

func openSQLite(t *testing.T) *store.Store {
	return newStore(t, openDB(t, filepath.Join(t.TempDir(), "omni.db")), masterKey)
}

func openPostgres(t *testing.T) *store.Store {
	return newStore(t, openDB(t, testenv.Postgres(t)), masterKey)
}

func TestSQLite(t *testing.T) { runSuite(t, openSQLite) }

func TestPostgres(t *testing.T) {
	testenv.Postgres(t) // skip (or fail when strict) early if unavailable
	runSuite(t, openPostgres)
}

// runSuite is the conformance suite shared by both dialects; every subtest
// gets a fresh store.
func runSuite(t *testing.T, open func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"Providers", testProviders},
		{"CredentialsSealed", testCredentialsSealed},
		{"OtherMasterKey", testOtherMasterKey},
		{"APIKeys", testAPIKeys},
		{"Aliases", testAliases},
		{"Combos", testCombos},
		{"Mappings", testMappings},
		{"ProviderModels", testProviderModels},
		{"Prices", testPrices},
		{"Settings", testSettings},
		{"Sessions", testSessions},
		{"Epoch", testEpoch},
		{"MigrateTwice", testMigrateTwice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func testProviders(t *testing.T, s *store.Store) {
	p := store.Provider{ID: "groq", Type: "openai-compatible", BaseURL: "https://api.groq.com/openai/v1",
		Headers: map[string]string{"X-Team": "a"}, Models: []string{"llama-3.3-70b"}, Enabled: true,
		Credentials: []store.Credential{{Label: "main", APIKey: "gsk_one", Enabled: true}, {Label: "backup", APIKey: "gsk_two", Priority: 1, Enabled: true}}}
	must(t, s.CreateProvider(ctx, p))
	wantErr(t, s.CreateProvider(ctx, p), store.ErrConflict)

	got, err := s.Provider(ctx, "groq")
	must(t, err)
	if got.Type != p.Type || got.BaseURL != p.BaseURL || got.Headers["X-Team"] != "a" || !slices.Equal(got.Models, p.Models) || !got.Enabled {
		t.Fatalf("provider = %+v", got)
	}
	if len(got.Credentials) != 2 || got.Credentials[0].APIKey != "gsk_one" || got.Credentials[1].APIKey != "gsk_two" ||
		got.Credentials[0].Label != "main" || got.Credentials[0].ID == "" || got.Credentials[0].Unreadable {
		t.Fatalf("credentials = %+v", got.Credentials)
	}

	// Update without touching credentials, then replacing them.
	got.BaseURL, got.Enabled, got.Models = "https://proxy.example/v1", false, nil
	must(t, s.UpdateProvider(ctx, got, false))
	again, err := s.Provider(ctx, "groq")
	must(t, err)
	if again.BaseURL != "https://proxy.example/v1" || again.Enabled || len(again.Models) != 0 || len(again.Credentials) != 2 {
		t.Fatalf("after update: %+v", again)
	}
	again.Credentials = []store.Credential{{APIKey: "gsk_three", Enabled: true}}
	must(t, s.UpdateProvider(ctx, again, true))
	again, err = s.Provider(ctx, "groq")
	must(t, err)
	if len(again.Credentials) != 1 || again.Credentials[0].APIKey != "gsk_three" {
		t.Fatalf("after replacing credentials: %+v", again.Credentials)
	}
	c, err := s.AddCredential(ctx, "groq", store.Credential{APIKey: "gsk_four", Priority: -1, Enabled: true})
	must(t, err)
	again, err = s.Provider(ctx, "groq")
	must(t, err)
	if len(again.Credentials) != 2 || again.Credentials[0].ID != c.ID {
		t.Fatalf("priority -1 credential should come first: %+v", again.Credentials)
	}
	must(t, s.DeleteCredential(ctx, "groq", c.ID))
	wantErr(t, s.DeleteCredential(ctx, "groq", c.ID), store.ErrNotFound)
	_, err = s.AddCredential(ctx, "nope", store.Credential{APIKey: "x"})
	wantErr(t, err, store.ErrNotFound)

	must(t, s.CreateProvider(ctx, store.Provider{ID: "local", Type: "openai-compatible", BaseURL: "http://localhost:8000/v1", Enabled: true}))
	all, err := s.Providers(ctx)
	must(t, err)
	if len(all) != 2 || all[0].ID != "groq" || all[1].ID != "local" || len(all[0].Credentials) != 1 || len(all[1].Credentials) != 0 {
		t.Fatalf("providers = %+v", all)
	}

	must(t, s.AddProviderModel(ctx, store.ProviderModel{Provider: "groq", Model: "extra", Kind: "chat"}))
	must(t, s.DeleteProvider(ctx, "groq"))
	wantErr(t, s.DeleteProvider(ctx, "groq"), store.ErrNotFound)
	_, err = s.Provider(ctx, "groq")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.UpdateProvider(ctx, store.Provider{ID: "groq", Type: "openai"}, false), store.ErrNotFound)
	ms, err := s.ProviderModels(ctx)
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("custom models of a deleted provider remain: %+v", ms)
	}
	var n int
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM route_credentials`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d credentials remain after deleting every keyed provider", n)
	}
}

func testCredentialsSealed(t *testing.T, s *store.Store) {
	must(t, s.CreateProvider(ctx, store.Provider{ID: "openai", Type: "openai", Enabled: true,
		Credentials: []store.Credential{{APIKey: "sk-very-secret-value", Enabled: true}}}))
	p, err := s.Provider(ctx, "openai")
	must(t, err)
	sealed, err := s.SealedCredential(ctx, p.Credentials[0].ID)
	must(t, err)
	if strings.Contains(sealed, "very-secret") || !strings.HasPrefix(sealed, "v1:") {
		t.Fatalf("stored credential %q is not sealed", sealed)
	}
	// The provider id is the AAD: the value cannot be moved to another row.
	sealer, err := auth.NewSealer(auth.DeriveKey(masterKey, store.CredentialKeyPurpose))
	must(t, err)
	if pt, err := sealer.Open(sealed, []byte("openai")); err != nil || string(pt) != "sk-very-secret-value" {
		t.Fatalf("open with provider AAD: %q %v", pt, err)
	}
	if _, err := sealer.Open(sealed, []byte("other")); err == nil {
		t.Fatal("sealed credential opens under another provider id")
	}
	var rows int
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM route_credentials WHERE api_key LIKE ?`, "%secret%").Scan(&rows))
	if rows != 0 {
		t.Fatal("plaintext key found in route_credentials")
	}
}

func testOtherMasterKey(t *testing.T, s *store.Store) {
	must(t, s.CreateProvider(ctx, store.Provider{ID: "openai", Type: "openai", Enabled: true,
		Credentials: []store.Credential{{APIKey: "sk-1", Enabled: true}}}))
	other := newStore(t, s.DB(), []byte("another-master-key-of-32-bytes!!"))
	p, err := other.Provider(ctx, "openai")
	must(t, err)
	if len(p.Credentials) != 1 || !p.Credentials[0].Unreadable || p.Credentials[0].APIKey != "" {
		t.Fatalf("credential under another master key: %+v", p.Credentials)
	}
	if _, err := store.New(ctx, s.DB(), []byte("short")); err == nil {
		t.Fatal("short master key accepted")
	}
}

func testAPIKeys(t *testing.T, s *store.Store) {
	t0 := time.UnixMilli(1_750_000_000_000).UTC()
	k := store.APIKey{ID: "key_1", Name: "ci", Prefix: "sk-omni-abcd", Hash: auth.TokenHash("raw"), CreatedAt: t0}
	must(t, s.CreateAPIKey(ctx, k))
	wantErr(t, s.CreateAPIKey(ctx, k), store.ErrConflict)
	k2 := k
	k2.ID = "key_2"
	wantErr(t, s.CreateAPIKey(ctx, k2), store.ErrConflict) // same hash
	k2.Hash, k2.CreatedAt, k2.AllowedModels = auth.TokenHash("raw2"), t0.Add(time.Second), []string{"openai/*"}
	must(t, s.CreateAPIKey(ctx, k2))
	must(t, s.TouchAPIKeys(ctx, []string{"key_2"}, t0.Add(time.Hour)))
	keys, err := s.APIKeys(ctx)
	must(t, err)
	if len(keys) != 2 || keys[0].ID != "key_1" || keys[0].Hash != k.Hash || !keys[0].CreatedAt.Equal(t0) || !keys[0].LastUsedAt.IsZero() ||
		!keys[1].LastUsedAt.Equal(t0.Add(time.Hour)) || !slices.Equal(keys[1].AllowedModels, []string{"openai/*"}) {
		t.Fatalf("keys = %+v", keys)
	}
	must(t, s.DeleteAPIKey(ctx, "key_1"))
	wantErr(t, s.DeleteAPIKey(ctx, "key_1"), store.ErrNotFound)
}

func testAliases(t *testing.T, s *store.Store) {
	created, err := s.SetAlias(ctx, store.Alias{Name: "smart", Target: "claude/claude-sonnet-4-5"})
	must(t, err)
	if !created {
		t.Fatal("first SetAlias did not report creation")
	}
	created, err = s.SetAlias(ctx, store.Alias{Name: "smart", Target: "openai/gpt-4o"})
	must(t, err)
	if created {
		t.Fatal("replacing SetAlias reported creation")
	}
	as, err := s.Aliases(ctx)
	must(t, err)
	if len(as) != 1 || as[0].Target != "openai/gpt-4o" {
		t.Fatalf("aliases = %+v", as)
	}
	must(t, s.DeleteAlias(ctx, "smart"))
	wantErr(t, s.DeleteAlias(ctx, "smart"), store.ErrNotFound)
}

func testCombos(t *testing.T, s *store.Store) {
	c := store.Combo{Name: "team", Strategy: "weighted", Targets: []store.Target{{Provider: "a", Model: "m", Weight: 2}, {Provider: "b", Model: "org/m"}}}
	must(t, s.CreateCombo(ctx, c))
	wantErr(t, s.CreateCombo(ctx, c), store.ErrConflict)
	got, err := s.Combo(ctx, "team")
	must(t, err)
	if got.Strategy != "weighted" || !slices.Equal(got.Targets, c.Targets) {
		t.Fatalf("combo = %+v", got)
	}
	c.Strategy, c.Targets = "priority", c.Targets[:1]
	must(t, s.UpdateCombo(ctx, c))
	all, err := s.Combos(ctx)
	must(t, err)
	if len(all) != 1 || all[0].Strategy != "priority" || len(all[0].Targets) != 1 {
		t.Fatalf("combos = %+v", all)
	}
	must(t, s.DeleteCombo(ctx, "team"))
	wantErr(t, s.DeleteCombo(ctx, "team"), store.ErrNotFound)
	wantErr(t, s.UpdateCombo(ctx, c), store.ErrNotFound)
	_, err = s.Combo(ctx, "team")
	wantErr(t, err, store.ErrNotFound)
}

func testMappings(t *testing.T, s *store.Store) {
	a, err := s.CreateMapping(ctx, store.Mapping{Pattern: "gpt-*", Combo: "team", Priority: 5, Enabled: true, Description: "all gpt"})
	must(t, err)
	b, err := s.CreateMapping(ctx, store.Mapping{Pattern: "claude-*", Combo: "team", Priority: 1, Enabled: false})
	must(t, err)
	if a.ID == "" || a.ID == b.ID {
		t.Fatalf("ids %q %q", a.ID, b.ID)
	}
	all, err := s.Mappings(ctx)
	must(t, err)
	if len(all) != 2 || all[0].ID != b.ID || all[1].Description != "all gpt" || all[0].Enabled {
		t.Fatalf("mappings = %+v", all)
	}
	a.Priority, a.Pattern = 0, "o*"
	must(t, s.UpdateMapping(ctx, a))
	got, err := s.Mapping(ctx, a.ID)
	must(t, err)
	if got.Pattern != "o*" || got.Priority != 0 || !got.Enabled {
		t.Fatalf("mapping = %+v", got)
	}
	must(t, s.DeleteMapping(ctx, a.ID))
	wantErr(t, s.DeleteMapping(ctx, a.ID), store.ErrNotFound)
	wantErr(t, s.UpdateMapping(ctx, a), store.ErrNotFound)
	_, err = s.Mapping(ctx, a.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testProviderModels(t *testing.T, s *store.Store) {
	m := store.ProviderModel{Provider: "openai", Model: "text-embedding-3-small", Kind: "embedding"}
	must(t, s.AddProviderModel(ctx, m))
	wantErr(t, s.AddProviderModel(ctx, m), store.ErrConflict)
	m.Hidden, m.Kind = true, "chat"
	must(t, s.UpdateProviderModel(ctx, m))
	all, err := s.ProviderModels(ctx)
	must(t, err)
	if len(all) != 1 || !all[0].Hidden || all[0].Kind != "chat" {
		t.Fatalf("models = %+v", all)
	}
	must(t, s.DeleteProviderModel(ctx, "openai", m.Model))
	wantErr(t, s.DeleteProviderModel(ctx, "openai", m.Model), store.ErrNotFound)
	wantErr(t, s.UpdateProviderModel(ctx, m), store.ErrNotFound)
}

func testPrices(t *testing.T, s *store.Store) {
	must(t, s.SetPrice(ctx, store.Price{Pattern: "gpt-4o*", Input: 2.5, Output: 10, CacheRead: 1.25}))
	must(t, s.SetPrice(ctx, store.Price{Pattern: "gpt-4o*", Input: 2, Output: 8}))
	ps, err := s.Prices(ctx)
	must(t, err)
	if len(ps) != 1 || ps[0].Input != 2 || ps[0].Output != 8 || ps[0].CacheRead != 0 {
		t.Fatalf("prices = %+v", ps)
	}
	must(t, s.DeletePrice(ctx, "gpt-4o*"))
	wantErr(t, s.DeletePrice(ctx, "gpt-4o*"), store.ErrNotFound)
	// A price in a modality's own unit.
	must(t, s.SetPrice(ctx, store.Price{Pattern: "rerank-*", Unit: "search_unit", UnitPrice: 0.002}))
	must(t, s.SetPrice(ctx, store.Price{Pattern: "rerank-*", Unit: "document", UnitPrice: 1.5, Input: 0.05}))
	ps, err = s.Prices(ctx)
	must(t, err)
	if len(ps) != 1 || ps[0].Unit != "document" || ps[0].UnitPrice != 1.5 || ps[0].Input != 0.05 {
		t.Fatalf("unit prices = %+v", ps)
	}
}

func testSettings(t *testing.T, s *store.Store) {
	if _, ok, err := s.Setting(ctx, store.SettingRequireLogin); err != nil || ok {
		t.Fatalf("unset setting: ok=%v err=%v", ok, err)
	}
	set, err := s.SetSettingIfAbsent(ctx, store.SettingPasswordHash, "h1")
	must(t, err)
	if !set {
		t.Fatal("SetSettingIfAbsent did not set an absent value")
	}
	set, err = s.SetSettingIfAbsent(ctx, store.SettingPasswordHash, "h2")
	must(t, err)
	if set {
		t.Fatal("SetSettingIfAbsent replaced a value")
	}
	must(t, s.SetSetting(ctx, store.SettingRequireLogin, "false"))
	must(t, s.SetSetting(ctx, store.SettingRequireLogin, "true"))
	if v, ok, err := s.Setting(ctx, store.SettingRequireLogin); err != nil || !ok || v != "true" {
		t.Fatalf("require_login = %q %v %v", v, ok, err)
	}
	if v, _, _ := s.Setting(ctx, store.SettingPasswordHash); v != "h1" {
		t.Fatalf("password hash = %q", v)
	}
	// SetSettings stores several at once, new and existing ones.
	must(t, s.SetSettings(ctx, map[string]string{store.SettingRequireLogin: "false", "test_a": "1", "test_b": "2"}))
	for k, want := range map[string]string{store.SettingRequireLogin: "false", "test_a": "1", "test_b": "2"} {
		if v, ok, err := s.Setting(ctx, k); err != nil || !ok || v != want {
			t.Fatalf("after SetSettings %s = %q %v %v, want %q", k, v, ok, err, want)
		}
	}
}

func testSessions(t *testing.T, s *store.Store) {
	now := time.Now()
	must(t, s.CreateSession(ctx, "s1", now, now.Add(time.Hour)))
	must(t, s.CreateSession(ctx, "s2", now, now.Add(time.Hour)))
	for _, tc := range []struct {
		id   string
		at   time.Time
		want bool
	}{{"s1", now, true}, {"s1", now.Add(2 * time.Hour), false}, {"nope", now, false}} {
		if ok, err := s.SessionValid(ctx, tc.id, tc.at); err != nil || ok != tc.want {
			t.Fatalf("SessionValid(%s) = %v, %v; want %v", tc.id, ok, err, tc.want)
		}
	}
	must(t, s.DeleteSession(ctx, "s1"))
	must(t, s.DeleteSession(ctx, "s1"))
	if ok, _ := s.SessionValid(ctx, "s1", now); ok {
		t.Fatal("deleted session still valid")
	}
	// A new password ends every session.
	must(t, s.SetPassword(ctx, "hash"))
	if ok, _ := s.SessionValid(ctx, "s2", now); ok {
		t.Fatal("session survived a password change")
	}
	// Expired sessions are pruned by the next login.
	must(t, s.CreateSession(ctx, "old", now.Add(-2*time.Hour), now.Add(-time.Hour)))
	must(t, s.CreateSession(ctx, "new", now, now.Add(time.Hour)))
	var n int
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM route_sessions`).Scan(&n))
	if n != 1 {
		t.Fatalf("%d sessions, want only the live one", n)
	}
}

func testEpoch(t *testing.T, s *store.Store) {
	e0, err := s.Epoch(ctx)
	must(t, err)
	_, err = s.SetAlias(ctx, store.Alias{Name: "a", Target: "p/m"})
	must(t, err)
	e1, err := s.Epoch(ctx)
	must(t, err)
	if e1 <= e0 {
		t.Fatalf("epoch %d -> %d after a change", e0, e1)
	}
	// A failed change does not bump it.
	wantErr(t, s.DeleteCombo(ctx, "missing"), store.ErrNotFound)
	if e2, _ := s.Epoch(ctx); e2 != e1 {
		t.Fatalf("epoch moved on a failed change: %d -> %d", e1, e2)
	}
}

func testMigrateTwice(t *testing.T, s *store.Store) {
	newStore(t, s.DB(), masterKey)
	var n int
	must(t, s.DB().QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE product = 'route'`).Scan(&n))
	if n == 0 {
		t.Fatal("no route migrations recorded")
	}
}

// ---- schema parity ----

func migrationFiles(t *testing.T, dialect string) []string {
	entries, err := fs.ReadDir(migrations.FS, dialect)
	must(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestMigrationFilesMatch(t *testing.T) {
	lite, pg := migrationFiles(t, "sqlite"), migrationFiles(t, "postgres")
	if len(lite) == 0 || !slices.Equal(lite, pg) {
		t.Fatalf("sqlite %v, postgres %v: want the same files", lite, pg)
	}
}

func TestSchemaParity(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	lite := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	pg := openDB(t, pgDSN)
	newStore(t, lite, masterKey)
	newStore(t, pg, masterKey)
	ls := map[string]map[string]bool{}
	rows, err := lite.Query(ctx, `SELECT m.name, p.name, p."notnull", p.pk FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name LIKE 'route_%'`)
	must(t, err)
	for rows.Next() {
		var tbl, col string
		var nn, pk int
		must(t, rows.Scan(&tbl, &col, &nn, &pk))
		if ls[tbl] == nil {
			ls[tbl] = map[string]bool{}
		}
		ls[tbl][col] = nn == 1 || pk > 0
	}
	rows.Close()
	ps := map[string]map[string]bool{}
	rows, err = pg.Query(ctx, `SELECT table_name, column_name, is_nullable FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name LIKE 'route_%'`)
	must(t, err)
	for rows.Next() {
		var tbl, col, nullable string
		must(t, rows.Scan(&tbl, &col, &nullable))
		if ps[tbl] == nil {
			ps[tbl] = map[string]bool{}
		}
		ps[tbl][col] = nullable == "NO"
	}
	rows.Close()
	if len(ls) < 10 {
		t.Fatalf("sqlite has %d route tables: %v", len(ls), slices.Sorted(maps.Keys(ls)))
	}
	if !maps.EqualFunc(ls, ps, maps.Equal) {
		t.Fatalf("schemas differ:\nsqlite   %v\npostgres %v", ls, ps)
	}
}

// Sealing the plaintext headers of old rows keeps an edit that commits
// while it runs: the row is rewritten only if it is still as read, never
// with headers read before the edit (PostgreSQL, where the two run side
// by side; SQLite serialises them).
func TestSealHeadersKeepsConcurrentEdits(t *testing.T) {
	db := openDB(t, testenv.Postgres(t))
	s := newStore(t, db, masterKey)
	if err := s.CreateProvider(ctx, store.Provider{ID: "p", Type: "openai", BaseURL: "http://a.example/v1", Headers: map[string]string{"X-Team": "blue"}}); err != nil {
		t.Fatal(err)
	}
	// As written before secret headers were sealed.
	if _, err := db.Exec(ctx, `UPDATE route_providers SET headers = ? WHERE id = 'p'`, `{"Authorization":"Bearer old-secret","X-Team":"blue"}`); err != nil {
		t.Fatal(err)
	}
	// An edit that drops the secret header holds the row while sealing
	// reads the old version and then waits for the row.
	edited, release, editDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		editDone <- db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE route_providers SET headers = ?, secret_headers = '', updated_at = updated_at + 1 WHERE id = 'p'`, `{"X-Team":"red"}`); err != nil {
				return err
			}
			close(edited)
			<-release
			return nil
		})
	}()
	<-edited
	type result struct {
		n   int
		err error
	}
	sealDone := make(chan result, 1)
	go func() {
		n, err := s.SealHeaders(ctx)
		sealDone <- result{n, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var waiting int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case r := <-sealDone:
			t.Fatalf("sealing did not wait for the edit's row: %d, %v", r.n, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("sealing never waited for the edited row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-editDone; err != nil {
		t.Fatal(err)
	}
	if r := <-sealDone; r.err != nil || r.n != 0 {
		t.Fatalf("sealing: %d rows, %v; want none rewritten", r.n, r.err)
	}
	p, err := s.Provider(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Headers) != 1 || p.Headers["X-Team"] != "red" || p.PlainSecretHeaders {
		t.Fatalf("headers after the edit and sealing: %v (plain secrets %v), want the edit's", p.Headers, p.PlainSecretHeaders)
	}
	// Sealing afterwards still seals what is plaintext.
	if _, err := db.Exec(ctx, `UPDATE route_providers SET headers = ? WHERE id = 'p'`, `{"X-Api-Key":"k-1","X-Team":"red"}`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SealHeaders(ctx); err != nil || n != 1 {
		t.Fatalf("sealing a plaintext row: %d, %v", n, err)
	}
	if p, err := s.Provider(ctx, "p"); err != nil || p.PlainSecretHeaders || p.Headers["X-Api-Key"] != "k-1" {
		t.Fatalf("after sealing: %v, %v", p, err)
	}
}
