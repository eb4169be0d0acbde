package app_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

var update = flag.Bool("update", false, "rewrite docs/route-endpoints.md")

const (
	endpointsDoc = "../../../docs/route-endpoints.md"
	specFile     = "../../../../shared/specs/omniroute-api.md" // next to the repository, not in it
	modulePath   = "github.com/omniedge/omni/internal/"
	coverageHead = "## Spec coverage"
	regenerate   = "go test ./internal/route/app -run TestEndpointTable -update"
)

// TestEndpointTable holds docs/route-endpoints.md to the routes the
// assembled gateway serves and to the endpoints the spec names: read from
// the spec when it is next to the repository, else from the committed
// coverage section (which a clean clone cannot rebuild).
func TestEndpointTable(t *testing.T) {
	routes := assembledRoutes(t)
	if len(routes) == 0 {
		t.Fatal("the assembled gateway lists no routes")
	}
	for _, r := range routes {
		if r.Auth == "" {
			t.Errorf("%s %s (%s) is registered without saying who may call it (httpx.WithAuth)", r.Method, r.Path, r.Owner)
		}
	}

	committed, err := os.ReadFile(endpointsDoc)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	_, committedCoverage, _ := strings.Cut(string(committed), coverageHead)

	spec := specFile
	if p := os.Getenv("OMNI_ROUTE_SPEC"); p != "" {
		spec = p // a checkout elsewhere than next to the specs
	}
	specText, err := os.ReadFile(spec)
	var named []specEndpoint
	haveSpec := err == nil
	switch {
	case haveSpec:
		named = parseSpec(string(specText))
		if len(named) == 0 {
			t.Fatalf("%s names no endpoints: has its format changed?", spec)
		}
	case os.IsNotExist(err):
		// Without the spec, its endpoints are the ones the committed
		// coverage lists: routes still move them between served and not.
		named = parseCoverage(committedCoverage)
		t.Logf("%s is absent: the spec's endpoints are taken from the committed table (OMNI_ROUTE_SPEC names the spec elsewhere)", spec)
	default:
		t.Fatal(err)
	}

	want := renderRoutes(routes, named) + renderCoverage(routes, named)
	if *update {
		if err := os.WriteFile(endpointsDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if string(committed) != want {
		t.Fatalf("docs/route-endpoints.md is stale (routes or spec changed): run `%s` and commit the result", regenerate)
	}
}

func assembledRoutes(t *testing.T) []httpx.Route {
	t.Helper()
	cfg := config.Default()
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
	routes := a.Routes()
	sort.SliceStable(routes, func(i, j int) bool {
		if routes[i].Path != routes[j].Path {
			return routes[i].Path < routes[j].Path
		}
		return methodOrder(routes[i].Method) < methodOrder(routes[j].Method)
	})
	return routes
}

func methodOrder(m string) int {
	if i := strings.Index("GET HEAD POST PUT PATCH DELETE", m); m != "" && i >= 0 {
		return i
	}
	return 100
}

func renderRoutes(routes []httpx.Route, spec []specEndpoint) string {
	var b strings.Builder
	b.WriteString("# OmniRoute endpoints\n\n")
	b.WriteString("<!-- Generated from the assembled gateway: `" + regenerate + "`. Do not edit. -->\n\n")
	b.WriteString("Every route the gateway (`internal/route/app`) serves on its listener, as registered. Auth:\n\n" +
		"- `gateway key`: a gateway key as `Authorization: Bearer`, `x-api-key` (or Gemini's\n" +
		"  `x-goog-api-key`/`?key=`); none is needed from the gateway host itself or when\n" +
		"  anonymous use is allowed (see [route.md](route.md)).\n" +
		"- `management session or key (manage)`: the dashboard login (`auth_token` cookie) and the browser\n" +
		"  checks, or a stored gateway key with the `manage` scope as `Authorization: Bearer`\n" +
		"  (see [route.md](route.md#management-api-keys)); `(mcp)`: a key with that scope instead.\n" +
		"- `issuing gateway key, management session or key (manage)`: a stored gateway key with the `issue`\n" +
		"  scope (its own registered keys), or the login or a management key (every one).\n" +
		"- `public`: no credential.\n\n" +
		"`omni serve` adds `/healthz`, `/readyz` and, with a metrics token, `/metrics` on the same\n" +
		"listener (see [operating.md](operating.md)); they are not part of the gateway's routes.\n" +
		"A path ending in `/` is a catch-all (answers 404/405 in the dialect's shape). Spec section: where\n" +
		"the OmniRoute API spec names the endpoint.\n\n")
	fmt.Fprintf(&b, "%d routes.\n\n", len(routes))
	b.WriteString("| Method | Path | Auth | Package | Spec section |\n|---|---|---|---|---|\n")
	for _, r := range routes {
		section := ""
		if !strings.HasSuffix(r.Path, "/") {
			for _, s := range spec {
				if servedBy(s, r) {
					section = s.Section
					break
				}
			}
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s |\n", methodName(r.Method), r.Path, r.Auth, strings.TrimPrefix(r.Owner, modulePath), section)
	}
	b.WriteString("\n")
	return b.String()
}

func renderCoverage(routes []httpx.Route, spec []specEndpoint) string {
	var served, unserved []string
	for _, s := range spec {
		by := ""
		for _, r := range routes {
			if !strings.HasSuffix(r.Path, "/") && servedBy(s, r) {
				by = "`" + strings.TrimSpace(methodName(r.Method)+" "+r.Path) + "`"
				break
			}
		}
		row := fmt.Sprintf("| %s | `%s` | %s | %s |\n", s.Method, s.Path, s.Section, by)
		if by != "" {
			served = append(served, row)
		} else {
			unserved = append(unserved, row)
		}
	}
	var b strings.Builder
	b.WriteString(coverageHead + "\n\n")
	b.WriteString("<!-- Generated from ../shared/specs/omniroute-api.md next to the repository; without it, from the endpoints listed here. -->\n\n")
	fmt.Fprintf(&b, "The spec names %d endpoints (method and path): %d served, %d not yet served.\n\n", len(spec), len(served), len(unserved))
	head := "| Method | Path | Spec section | Route |\n|---|---|---|---|\n"
	b.WriteString("### Served\n\n" + head + strings.Join(served, "") + "\n")
	b.WriteString("### Not yet served\n\n" + head + strings.Join(unserved, ""))
	return b.String()
}

func methodName(m string) string {
	if m == "" {
		return "any"
	}
	return m
}

// specEndpoint is a method and path the spec names, under its section.
type specEndpoint struct {
	Method, Path, Section string
}

var (
	specPair = regexp.MustCompile("\\b(GET|POST|PUT|PATCH|DELETE)\\s+(/[^\\s,;)\"'`|]*)")
	specVar  = regexp.MustCompile(`^(\{[^}]*\}|\[[^\]]*\]|:\w+)$`)
)

// parseSpec lists every "METHOD /path" the spec names, once, with the
// section heading (a short line between blank lines) above it.
func parseSpec(text string) []specEndpoint {
	lines := strings.Split(text, "\n")
	seen := map[string]bool{}
	var out []specEndpoint
	section := ""
	for i, line := range lines {
		if isHeading(lines, i) {
			section = strings.TrimSpace(line)
			continue
		}
		for _, m := range specPair.FindAllStringSubmatch(line, -1) {
			path, _, _ := strings.Cut(m[2], "?")
			path = strings.TrimRight(path, ".:")
			if path == "" {
				continue
			}
			if k := m[1] + " " + normalise(path); !seen[k] {
				seen[k] = true
				out = append(out, specEndpoint{Method: m[1], Path: path, Section: section})
			}
		}
	}
	sortSpec(out)
	return out
}

var coverageRow = regexp.MustCompile("^\\| ([A-Z]+) \\| `([^`]+)` \\| ([^|]*) \\|")

// parseCoverage reads the spec's endpoints back from a committed coverage
// section.
func parseCoverage(text string) []specEndpoint {
	var out []specEndpoint
	for _, line := range strings.Split(text, "\n") {
		if m := coverageRow.FindStringSubmatch(line); m != nil {
			out = append(out, specEndpoint{Method: m[1], Path: m[2], Section: strings.TrimSpace(m[3])})
		}
	}
	sortSpec(out)
	return out
}

// sortSpec orders endpoints by path, then method, the same whether they
// came from the spec or from the committed table.
func sortSpec(es []specEndpoint) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Path != es[j].Path {
			return es[i].Path < es[j].Path
		}
		return methodOrder(es[i].Method) < methodOrder(es[j].Method)
	})
}

func isHeading(lines []string, i int) bool {
	s := strings.TrimSpace(lines[i])
	if len(s) < 3 || len(s) > 60 || s[0] < 'A' || s[0] > 'Z' || strings.ContainsAny(s, ":{}=|/#→") ||
		strings.HasSuffix(s, ".") || specPair.MatchString(s) {
		return false
	}
	return i > 0 && strings.TrimSpace(lines[i-1]) == "" && i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == ""
}

// normalise writes every placeholder segment as "*" ("**" when it takes
// the rest of the path).
func normalise(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if specVar.MatchString(s) {
			segs[i] = "*"
			if strings.Contains(s, "...") {
				segs[i] = "**"
			}
		}
	}
	return strings.Join(segs, "/")
}

// servedBy reports whether route r serves the spec's endpoint: the same
// method (a route for any method serves all) and a path pattern that
// takes the spec's path (a route placeholder takes any segment, a spec
// placeholder only a route placeholder).
func servedBy(s specEndpoint, r httpx.Route) bool {
	if r.Method != "" && r.Method != s.Method {
		return false
	}
	sp := strings.Split(normalise(s.Path), "/")
	rp := strings.Split(r.Path, "/")
	for i, seg := range rp {
		wild := strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}")
		if wild && strings.HasSuffix(seg, "...}") {
			return true
		}
		if i >= len(sp) {
			return false
		}
		switch {
		case sp[i] == "**":
			return false
		case wild:
		case seg != sp[i]:
			return false
		}
	}
	return len(sp) == len(rp)
}
