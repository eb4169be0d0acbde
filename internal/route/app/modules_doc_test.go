package app_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/feature"
)

const (
	modulesDoc        = "../../../docs/route-modules.md"
	regenerateModules = "go test ./internal/route/app -run TestModuleTable -update"
)

// TestModuleTable holds docs/route-modules.md to the modules the
// assembled gateway is made of, and each module's routes to its package.
func TestModuleTable(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = "correct horse battery"
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: bytes.Repeat([]byte{7}, 32), Clock: clock.Real{}})
	if err != nil {
		t.Fatal(err)
	}
	features := a.Features()
	total := 0
	for _, f := range features {
		if f.Package == "" {
			t.Errorf("module %s names no package", f.Name)
		}
		for _, r := range f.Served {
			if got := strings.TrimPrefix(r.Owner, modulePath); got != f.Package {
				t.Errorf("module %s (%s) registered %s %s, which the route list says %s registered", f.Name, f.Package, r.Method, r.Path, got)
			}
		}
		total += len(f.Served)
	}
	if n := len(a.Routes()); total != n {
		t.Errorf("the modules registered %d routes, the gateway serves %d", total, n)
	}

	want := renderModules(features)
	committed, err := os.ReadFile(modulesDoc)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(modulesDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if string(committed) != want {
		t.Fatalf("docs/route-modules.md is stale (the module list changed): run `%s` and commit the result", regenerateModules)
	}
}

func renderModules(features []routeapp.Feature) string {
	var b strings.Builder
	b.WriteString("# OmniRoute modules\n\n")
	b.WriteString("<!-- Generated from the assembled gateway: `" + regenerateModules + "`. Do not edit. -->\n\n")
	b.WriteString("The gateway is assembled from one list of feature modules (`modules` in\n" +
		"`internal/route/app/modules.go`; the contract is `internal/route/feature`), built in this\n" +
		"order: a module may use what one above it built. Each declares the routes it serves (listed\n" +
		"in [route-endpoints.md](route-endpoints.md)), the stage it installs into the request\n" +
		"pipeline, the migrations it owns, the settings it reads, the provider types it brings and its\n" +
		"background loop. Routes: how many it registers on a gateway with a database (management\n" +
		"routes need one). Installs: provider types, and pipeline stages; gates run in their order (`record` before `enforce`), then in the\n" +
		"list's; a request screen sees every request of the listener before it is routed. Migrations: versions of the route store's migrations (product `route`), or a product\n" +
		"of the module's own. Settings: configuration keys, and keys of the route store's settings\n" +
		"table (stored). Loop: how its background loop ends when the gateway stops (`detached` with\n" +
		"the context, `awaited` before requests settle, `settling` after they have), and `settle`\n" +
		"when the gateway waits for its requests in flight.\n\n")
	fmt.Fprintf(&b, "%d modules.\n\n", len(features))
	b.WriteString("| Module | Package | Routes | Installs | Migrations | Settings | Loop |\n|---|---|---|---|---|---|---|\n")
	for _, f := range features {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", f.Name, f.Package, len(f.Served),
			stageCell(f.Module), migrationsCell(f.Migrations), settingsCell(f.Settings), loopCell(f.Module))
	}
	return b.String()
}

func stageCell(m feature.Module) string {
	var out []string
	if m.Providers != nil {
		out = append(out, "provider types")
	}
	s := m.Stage
	if s.Rewrite != nil {
		out = append(out, "rewriter")
	}
	if s.Gate != nil {
		out = append(out, "gate ("+s.Order.String()+")")
	}
	if s.Idempotency != nil {
		out = append(out, "idempotency")
	}
	if s.Cache != nil {
		out = append(out, "cache")
	}
	if s.Responses != nil {
		out = append(out, "response store")
	}
	if s.Health != nil {
		out = append(out, "router health")
	}
	if m.Screen != nil {
		out = append(out, "request screen")
	}
	return strings.Join(out, ", ")
}

func migrationsCell(m feature.Migrations) string {
	var out []string
	for _, v := range m.Route {
		out = append(out, "`"+v+"`")
	}
	if m.Product != "" {
		out = append(out, "product `"+m.Product+"`")
	}
	return strings.Join(out, ", ")
}

func settingsCell(s feature.Settings) string {
	var out []string
	for _, k := range s.Config {
		out = append(out, "`"+k+"`")
	}
	for _, k := range s.Stored {
		out = append(out, "`"+k+"` (stored)")
	}
	return strings.Join(out, ", ")
}

func loopCell(m feature.Module) string {
	var out []string
	if m.Init != nil {
		out = append(out, "init")
	}
	if m.Run != nil {
		out = append(out, m.Lifetime.String())
	}
	if m.Settle != nil {
		out = append(out, "settle")
	}
	return strings.Join(out, ", ")
}
