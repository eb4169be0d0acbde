package app

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store/migrations"
)

func testDeps(t *testing.T) (*config.Config, Deps) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = "correct horse battery"
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &cfg, Deps{DB: db, MasterKey: bytes.Repeat([]byte{7}, 32), Clock: clock.Real{}}
}

// Every migration of the route store is owned by exactly one module, and
// every version a module claims is one of them, in both dialects.
func TestRouteMigrationsOwned(t *testing.T) {
	cfg, d := testDeps(t)
	a, err := Open(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string][]string{}
	for _, f := range a.Features() {
		for _, v := range f.Migrations.Route {
			owner[v] = append(owner[v], f.Name)
		}
	}
	files := map[string]bool{}
	for _, dialect := range []string{"sqlite", "postgres"} {
		entries, err := fs.ReadDir(migrations.FS, dialect)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			v, _, _ := strings.Cut(e.Name(), "_")
			files[v] = true
			if len(owner[v]) != 1 {
				t.Errorf("%s/%s is owned by %d modules %v, want exactly one (feature.Migrations.Route)", dialect, e.Name(), len(owner[v]), owner[v])
			}
		}
	}
	for v, by := range owner {
		if !files[v] {
			t.Errorf("modules %v claim route store migration %s, which does not exist", by, v)
		}
	}
}

// A module with a schema of its own has it migrated under its product
// before any module's Init, and recorded.
func TestModuleProductMigrations(t *testing.T) {
	cfg, d := testDeps(t)
	ctx := context.Background()
	fsys := fstest.MapFS{
		"sqlite/20990101000000_things.sql":   {Data: []byte("CREATE TABLE feature_things (id TEXT PRIMARY KEY);")},
		"postgres/20990101000000_things.sql": {Data: []byte("CREATE TABLE feature_things (id TEXT PRIMARY KEY);")},
	}
	inited := false
	things := func(_ context.Context, w *wiring) (feature.Module, error) {
		return feature.Module{Name: "things", Package: "route/things",
			Migrations: feature.Migrations{Product: "route_things", FS: fsys},
			Init: func(ctx context.Context) error {
				inited = true
				var n int
				return w.d.DB.QueryRow(ctx, "SELECT COUNT(*) FROM feature_things").Scan(&n)
			}}, nil
	}
	parts := append(modules(), built(things))
	if _, err := open(ctx, cfg, d, parts); err != nil {
		t.Fatal(err)
	}
	if !inited {
		t.Fatal("the module's Init did not run")
	}
	var n int
	if err := d.DB.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE product = 'route_things' AND version = '20990101000000'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("recorded migrations of route_things: %d, %v; want 1", n, err)
	}
	// Opening again (another replica, a restart) applies nothing twice.
	if _, err := open(ctx, cfg, d, parts); err != nil {
		t.Fatal(err)
	}

	// A product is a module's alone: not the route store's, not another's.
	for _, product := range []string{"route", "edge"} {
		clash := func(context.Context, *wiring) (feature.Module, error) {
			return feature.Module{Name: "clash", Package: "route/clash", Migrations: feature.Migrations{Product: product, FS: fsys}}, nil
		}
		if _, err := open(ctx, cfg, d, append(modules(), built(clash))); err == nil {
			t.Errorf("a module migrating product %q was accepted", product)
		}
	}
	twice := func(context.Context, *wiring) (feature.Module, error) {
		return feature.Module{Name: "twice", Package: "route/twice", Migrations: feature.Migrations{Product: "route_things", FS: fsys}}, nil
	}
	if _, err := open(ctx, cfg, d, append(modules(), built(things), built(twice))); err == nil {
		t.Error("two modules migrating one product were accepted")
	}

	// Without a database, a module with a schema cannot be served.
	cfg2 := config.Default()
	if _, err := open(ctx, &cfg2, Deps{}, append(modules(), built(things))); err == nil {
		t.Error("a module with a schema was assembled without a database")
	}
}

// gate is a pipeline.Gate that does nothing.
type gate struct{ name string }

func (gate) Admit(ctx context.Context, _ *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	return ctx, func(pipeline.Outcome) {}, nil
}

// The gates run in their declared order, then in the list's; each stage
// other than a gate exists once; no stage comes after the gateway.
func TestStageOrder(t *testing.T) {
	cfg := config.Default()
	a := &App{}
	w := &wiring{cfg: &cfg, app: a}
	enforce1, record, enforce2 := &gate{"enforce1"}, &gate{"record"}, &gate{"enforce2"}
	for _, m := range []feature.Module{
		{Name: "e1", Stage: feature.Stage{Gate: enforce1, Order: feature.Enforce}},
		{Name: "r", Stage: feature.Stage{Gate: record, Order: feature.Record}},
		{Name: "e2", Stage: feature.Stage{Gate: enforce2, Order: feature.Enforce}},
	} {
		if err := w.install(m); err != nil {
			t.Fatal(err)
		}
	}
	got := w.pipeline().Gates
	if want := []pipeline.Gate{record, enforce1, enforce2}; !slices.Equal(got, want) {
		t.Fatalf("gates %v, want %v", got, want)
	}

	rs := pipeline.NewMemoryResponseStore(pipeline.ResponseLimits{}, clock.Real{})
	if err := w.install(feature.Module{Name: "c1", Stage: feature.Stage{Responses: rs}}); err != nil {
		t.Fatal(err)
	}
	if err := w.install(feature.Module{Name: "c2", Stage: feature.Stage{Responses: rs}}); err == nil {
		t.Error("a second response store was installed")
	}
	// The assembled gateway's gates: usage records, then limits enforce.
	cfgDB, d := testDeps(t)
	full, err := Open(context.Background(), cfgDB, d)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range full.Features() {
		if f.Stage.Gate != nil {
			order = append(order, f.Name)
		}
	}
	if !slices.Equal(order, []string{"webhooks", "policies", "limits", "usage"}) { // webhooks records request.failed
		t.Fatalf("modules with gates %v", order)
	}
	late := func(context.Context, *wiring) (feature.Module, error) {
		return feature.Module{Name: "late", Package: "route/late", Stage: feature.Stage{Gate: &gate{"late"}}}, nil
	}
	if _, err := open(context.Background(), cfgDB, d, append(modules(), built(late))); err == nil {
		t.Error("a module installing a stage after the gateway was accepted")
	}
}

// App.Run: detached loops end with ctx; awaited ones are waited for and
// give Run's error; settling ones outlive ctx until every module settled,
// and Run waits for their last flush.
func TestRunLifetimes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	writerCtx := make(chan context.Context, 1)
	var events []string
	ev := make(chan string, 10)
	boom := errors.New("boom")
	a := &App{settle: time.Second, log: slog.New(slog.DiscardHandler), features: []Feature{
		{Module: feature.Module{Name: "detached", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }}},
		{Module: feature.Module{Name: "writer", Lifetime: feature.Settling, Run: func(wctx context.Context) error {
			writerCtx <- wctx
			<-wctx.Done()
			ev <- "last flush"
			return nil
		}}},
		{Module: feature.Module{Name: "main", Lifetime: feature.Awaited, Run: func(ctx context.Context) error {
			<-ctx.Done()
			ev <- "main returned"
			return boom
		}}},
		{Module: feature.Module{Name: "gateway", Settle: func(context.Context) error {
			if (<-writerCtx).Err() != nil {
				ev <- "the writer stopped before the requests settled"
			}
			ev <- "settled"
			return nil
		}}},
	}}
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want the awaited loop's error", err)
	}
	close(ev)
	for e := range ev {
		events = append(events, e)
	}
	if want := []string{"main returned", "settled", "last flush"}; !slices.Equal(events, want) {
		t.Fatalf("events %v, want %v", events, want)
	}
}

// Without a database the gateway has no management API: the admin
// resource modules and those keeping state in the route store are not
// assembled, while the routing state (from the configuration alone) and
// the gateway are, and no route needs the dashboard login.
func TestModulesWithoutStore(t *testing.T) {
	cfg := config.Default()
	a, err := New(&cfg, nil, clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range a.Features() {
		names = append(names, f.Name)
	}
	want := []string{"anthropic", "openai", "responses", "gemini", "ollama", "rerank-upstreams", "media-upstreams", "search-upstreams",
		"images-upstreams", "audio-upstreams", "routing", "resilience", "cache", "conversations", "gateway", "rerank", "moderation", "search",
		"images", "audio"}
	if !slices.Equal(names, want) {
		t.Fatalf("modules without a store %v, want %v", names, want)
	}
	for _, r := range a.Routes() {
		if strings.HasPrefix(r.Auth, "management session") {
			t.Errorf("%s %s needs the dashboard login on a gateway without a store", r.Method, r.Path)
		}
	}
}

// A module's own schema names no table route_*: backups copy the route
// store's route_* tables and refuse a file that lacks one the live
// database has, so such a table would make every backup unrestorable.
func TestModuleTablesAreNotRouteTables(t *testing.T) {
	cfg, d := testDeps(t)
	a, err := open(context.Background(), cfg, d, modules())
	if err != nil {
		t.Fatal(err)
	}
	create := regexp.MustCompile(`(?i)CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?"?route_`)
	checked := 0
	for _, f := range a.Features() {
		if f.Migrations.FS == nil {
			continue
		}
		err := fs.WalkDir(f.Migrations.FS, ".", func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() || !strings.HasSuffix(path, ".sql") {
				return err
			}
			b, err := fs.ReadFile(f.Migrations.FS, path)
			if err != nil {
				return err
			}
			checked++
			if create.Match(b) {
				t.Errorf("module %s: %s creates a route_* table; name the module's tables otherwise (gateway_…)", f.Name, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("no module migration was read")
	}
}
