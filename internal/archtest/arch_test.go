package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/omniedge/omni/"

type pkg struct {
	dir     string
	docs    []string // files carrying a package doc comment
	imports map[string][]string
	std     map[string][]string // imports from outside the module
	isMain  bool
}

func loadPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if name == "testdata" || strings.HasPrefix(name, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := pkgs[rel]
		if p == nil {
			p = &pkg{dir: rel, imports: map[string][]string{}, std: map[string][]string{}}
			pkgs[rel] = p
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.docs = append(p.docs, filepath.Base(path))
		}
		if f.Name.Name == "main" {
			p.isMain = true
		}
		for _, imp := range f.Imports {
			v, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(v, module) {
				p.imports[strings.TrimPrefix(v, module)] = append(p.imports[strings.TrimPrefix(v, module)], filepath.Base(path))
			} else {
				p.std[v] = append(p.std[v], filepath.Base(path))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages under %s; the walk is broken", len(pkgs), root)
	}
	return pkgs
}

func TestEveryPackageHasOneDoc(t *testing.T) {
	for dir, p := range loadPackages(t) {
		if len(p.docs) != 1 {
			t.Errorf("%s: %d files with a package doc comment %v; want exactly 1", dir, len(p.docs), p.docs)
		}
	}
}

func TestImportRules(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	for dir, p := range loadPackages(t) {
		dir = filepath.ToSlash(dir)
		for imp, files := range p.imports {
			switch {
			case under(dir, "internal/platform") && (under(imp, "internal/edge") || under(imp, "internal/route") || under(imp, "internal/cli")):
				t.Errorf("%s imports %s (%v): platform must not import a product", dir, imp, files)
			case under(dir, "internal/edge") && under(imp, "internal/route"):
				t.Errorf("%s imports %s (%v): edge must not import route", dir, imp, files)
			case under(dir, "internal/route") && under(imp, "internal/edge"):
				t.Errorf("%s imports %s (%v): route must not import edge", dir, imp, files)
			case dir == "internal/edge" && (under(imp, "internal/edge/api") || under(imp, "internal/edge/app") || under(imp, "internal/edge/store") ||
				under(imp, "internal/edge/presence") || under(imp, "internal/edge/session") || under(imp, "internal/edge/client")):
				t.Errorf("%s imports %s (%v): the domain must not depend on transports or implementations", dir, imp, files)
			case (under(dir, "internal/edge/wire") || under(dir, "internal/edge/wgkey")) && imp != "":
				t.Errorf("%s imports %s: %s depends on nothing of ours", dir, imp, filepath.Base(dir))
			}
		}
	}
}

// The request pipeline's stages know the pipeline's contract, never the
// HTTP transport or a client format; the pipeline itself (contract and
// engine) imports neither, nor net/http.
var (
	pipelineStages = []string{"internal/route/limits", "internal/route/usage", "internal/route/cache",
		"internal/route/resilience", "internal/route/conversations", "internal/route/pipeline"}
	transports = []string{"internal/route/api", "internal/route/formats", "internal/route/app", "internal/route/admin",
		"internal/platform/httpx"}
)

func TestPipelineStagesImportNoTransport(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	pkgs := loadPackages(t)
	for _, dir := range pipelineStages {
		p := pkgs[filepath.FromSlash(dir)]
		if p == nil {
			t.Errorf("%s: package not found", dir)
			continue
		}
		for imp, files := range p.imports {
			if under(imp, "internal/route/api") || under(imp, "internal/route/formats") {
				t.Errorf("%s imports %s (%v): a pipeline stage imports route/pipeline, never the transport or a format", dir, imp, files)
			}
			if dir == "internal/route/pipeline" {
				for _, tr := range transports {
					if under(imp, tr) {
						t.Errorf("%s imports %s (%v): the pipeline imports no transport or format package", dir, imp, files)
					}
				}
			}
		}
	}
	p := pkgs[filepath.FromSlash("internal/route/pipeline")]
	if p == nil {
		return
	}
	for imp, files := range p.std {
		if under(imp, "net/http") {
			t.Errorf("internal/route/pipeline imports %s (%v): the pipeline imports no transport", imp, files)
		}
	}
}

// The pipeline's engine runs behind the HTTP transport, never inside it:
// neither route/pipeline nor any package of ours it imports, directly or
// not, is a transport (route/api, the management API, the assembly,
// platform/httpx) or a client format, or imports net/http/httptest.
// net/http itself comes in through route/llm and route/router (status
// constants, the upstream exchange) but never into route/pipeline's own
// files (TestPipelineStagesImportNoTransport).
func TestPipelineEngineImportsNoTransport(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	pkgs := loadPackages(t)
	const root = "internal/route/pipeline"
	via := map[string]string{root: ""} // package → the package that imports it
	queue := []string{root}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		p := pkgs[filepath.FromSlash(dir)]
		if p == nil {
			t.Errorf("%s: package not found", dir)
			continue
		}
		path := dir
		for d := via[dir]; d != ""; d = via[d] {
			path = d + " → " + path
		}
		for _, tr := range transports {
			if under(dir, tr) {
				t.Errorf("%s: %s is a transport or format package; the pipeline imports none", path, dir)
			}
		}
		if files, ok := p.std["net/http/httptest"]; ok {
			t.Errorf("%s imports net/http/httptest (%v): the pipeline imports no test transport", path, files)
		}
		for imp := range p.imports {
			if _, seen := via[imp]; !seen {
				via[imp] = dir
				queue = append(queue, imp)
			}
		}
	}
	if len(via) < 3 {
		t.Errorf("%s imports only %d packages of ours; the walk is broken", root, len(via)-1)
	}
}

func TestMainIsTrivial(t *testing.T) {
	b, err := os.ReadFile("../../cmd/omni/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 40 {
		t.Errorf("cmd/omni/main.go has %d lines; keep main a few lines calling internal/cli", n)
	}
}

// The gateway is hub-and-spoke: each wire format under route/formats
// translates to and from route/llm and never imports another format. The
// helpers below are shared by the formats and import no format themselves;
// formats/matrix pairs the formats in its tests only, so its non-test code
// imports none. Every other directory under route/formats is a format.
var formatHelpers = []string{"internal/route/formats/sse", "internal/route/formats/upstreamhttp", "internal/route/formats/adapter", "internal/route/formats/formattest"}

func TestFormatsImportNoOtherFormat(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	const formats = "internal/route/formats"
	pkgs := loadPackages(t)
	helper := func(imp string) bool {
		for _, h := range formatHelpers {
			if under(imp, h) {
				return true
			}
		}
		return false
	}
	for _, h := range formatHelpers {
		if pkgs[filepath.FromSlash(h)] == nil {
			t.Errorf("%s: helper package not found; update formatHelpers", h)
		}
	}
	// own is the directory directly under formats that dir belongs to.
	own := func(dir string) string {
		rest := strings.TrimPrefix(dir, formats+"/")
		return formats + "/" + strings.SplitN(rest, "/", 2)[0]
	}
	checked := 0
	for dir, p := range pkgs {
		dir = filepath.ToSlash(dir)
		if !strings.HasPrefix(dir, formats+"/") {
			continue
		}
		checked++
		for imp, files := range p.imports {
			if under(imp, formats) && !helper(imp) && own(imp) != own(dir) {
				t.Errorf("%s imports %s (%v): a format never imports another format (only %v); translate through route/llm", dir, imp, files, formatHelpers)
			}
		}
	}
	if checked < len(formatHelpers)+2 {
		t.Errorf("found only %d packages under %s; the walk is broken", checked, formats)
	}
	router := pkgs[filepath.FromSlash("internal/route/router")]
	if router == nil {
		t.Fatal("internal/route/router: package not found")
	}
	for imp, files := range router.imports {
		if under(imp, formats) {
			t.Errorf("internal/route/router imports %s (%v): the router chooses providers on the canonical model and imports no format", imp, files)
		}
	}
}

// OmniEdge packages fall on three sides. The device side is what runs on a
// user's machine (`omni edge up` and its data plane, and `omni edge
// nucleus`); the server side is the control plane `omni serve edge` runs;
// the shared packages are the protocols both speak. The device side and the
// shared packages import, of internal/edge, only the device side and the
// shared packages; the shared packages import no device package either.
// Everything else under internal/edge (the domain package internal/edge,
// api, app, store, session, presence, netevents, …) is the server side;
// edgetest and e2e are test support and unchecked.
var (
	edgeDevice = []string{"internal/edge/daemon", "internal/edge/dataplane", "internal/edge/tunnel",
		"internal/edge/client", "internal/edge/hosted"}
	edgeShared = []string{"internal/edge/wire", "internal/edge/nucleus", "internal/edge/wgkey", "internal/edge/ipam"}
)

func TestEdgeDeviceImportsNoServer(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	in := func(imp string, sets ...[]string) bool {
		for _, set := range sets {
			for _, s := range set {
				if under(imp, s) {
					return true
				}
			}
		}
		return false
	}
	pkgs := loadPackages(t)
	for _, d := range append(append([]string{}, edgeDevice...), edgeShared...) {
		if pkgs[filepath.FromSlash(d)] == nil {
			t.Errorf("%s: package not found; update edgeDevice/edgeShared", d)
		}
	}
	for dir, p := range pkgs {
		dir = filepath.ToSlash(dir)
		device, shared := in(dir, edgeDevice), in(dir, edgeShared)
		if !device && !shared {
			continue
		}
		for imp, files := range p.imports {
			if !under(imp, "internal/edge") {
				continue
			}
			switch {
			case shared && !in(imp, edgeShared):
				t.Errorf("%s imports %s (%v): a shared edge protocol imports only %v of internal/edge", dir, imp, files, edgeShared)
			case device && !in(imp, edgeDevice, edgeShared):
				t.Errorf("%s imports %s (%v): device-side code imports no server-side package (only %v and %v)", dir, imp, files, edgeDevice, edgeShared)
			}
		}
	}
}

// route/feature is the module contract: it may know the contracts a
// module fills (the pipeline's, the router's, the provider registry and
// httpx's handler type) and nothing else of ours, so every feature can
// import it and it never pulls a feature, the transport or a format in.
var featureImports = []string{"internal/route/pipeline", "internal/route/router", "internal/route/provider", "internal/platform/httpx"}

func TestFeatureContractKnowsNoFeature(t *testing.T) {
	pkgs := loadPackages(t)
	p := pkgs[filepath.FromSlash("internal/route/feature")]
	if p == nil {
		t.Fatal("internal/route/feature: package not found")
	}
	for imp, files := range p.imports {
		ok := false
		for _, allowed := range featureImports {
			ok = ok || imp == allowed
		}
		if !ok {
			t.Errorf("internal/route/feature imports %s (%v): the module contract imports only %v of ours", imp, files, featureImports)
		}
	}
}

// The management API is one package per resource under route/admin. They
// share only route/admin itself (the browser checks, the session guard and
// the helpers), never each other, and route/admin imports none of them;
// admintest, which assembles the whole gateway for their tests, is
// imported by tests only. The routing state they serve is the domain: it
// imports no management package and no HTTP transport.
func TestAdminPackagesImportNoOtherAdminPackage(t *testing.T) {
	const adminDir = "internal/route/admin"
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	for dir, p := range loadPackages(t) {
		dir = filepath.ToSlash(dir)
		for imp, files := range p.imports {
			switch {
			case imp == adminDir+"/admintest":
				t.Errorf("%s imports %s (%v): admintest is for tests only", dir, imp, files)
			case under(dir, adminDir) && dir != adminDir+"/admintest" && under(imp, adminDir) && imp != adminDir && imp != dir:
				t.Errorf("%s imports %s (%v): management packages share only %s", dir, imp, files, adminDir)
			case dir == "internal/route/routing" && (under(imp, adminDir) || imp == "internal/platform/httpx" || under(imp, "internal/route/api")):
				t.Errorf("%s imports %s (%v): the routing state imports no management package or HTTP transport", dir, imp, files)
			}
		}
	}
}
