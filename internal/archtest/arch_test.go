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
			case dir == edgeDomain && under(imp, "internal/edge") && !under(imp, edgeProto):
				t.Errorf("%s imports %s (%v): the domain must not depend on transports or implementations (only %s)", dir, imp, files, edgeProto)
			case (under(dir, "internal/edge/proto/wire") || under(dir, "internal/edge/proto/wgkey")) && imp != "":
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

// OmniEdge packages fall on three sides, one directory each. The device
// side (internal/edge/device/...) is what runs on a user's machine: `omni
// edge up` and its data plane, the Go client, and `omni edge nucleus`. The
// server side (internal/edge/server/...) is the control plane `omni serve
// edge` runs. The shared protocols (internal/edge/proto/...) are what both
// sides speak, and the nucleus both run. The device side never imports the
// server side, nor the server side the device side; proto imports neither.
// edgetest and e2e are test support and unchecked; internal/edge itself is
// only the map (a doc comment); no other package lives under
// internal/edge, so a new one has to pick its side.
const (
	edgeDevice = "internal/edge/device"
	edgeServer = "internal/edge/server"
	edgeProto  = "internal/edge/proto"
	// edgeDomain is the control plane's domain: types, errors, the
	// interfaces its implementations satisfy, and the Service.
	edgeDomain = "internal/edge/server/control"
)

var edgeTestSupport = []string{"internal/edge/e2e", "internal/edge/edgetest"}

func TestEdgeSides(t *testing.T) {
	under := func(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }
	pkgs := loadPackages(t)
	for _, d := range []string{edgeDevice + "/daemon", edgeDevice + "/dataplane", edgeDevice + "/tunnel", edgeDevice + "/names", edgeDevice + "/client",
		edgeDevice + "/hosted", edgeProto + "/wire", edgeProto + "/nucleus", edgeProto + "/wgkey", edgeProto + "/ipam", edgeProto + "/policy", edgeDomain,
		edgeServer + "/api", edgeServer + "/app", edgeServer + "/store"} {
		if pkgs[filepath.FromSlash(d)] == nil {
			t.Errorf("%s: package not found; update the edge sides", d)
		}
	}
	side := func(dir string) string {
		for _, s := range []string{edgeDevice, edgeServer, edgeProto} {
			if under(dir, s) {
				return s
			}
		}
		return ""
	}
	for dir, p := range pkgs {
		dir = filepath.ToSlash(dir)
		if !under(dir, "internal/edge") {
			continue
		}
		test := false
		for _, s := range edgeTestSupport {
			test = test || under(dir, s)
		}
		own := side(dir)
		switch {
		case test:
			continue
		case dir == "internal/edge":
			if len(p.imports) > 0 {
				t.Errorf("%s imports %v: the product's root package is its map (a doc comment) and holds no code", dir, p.imports)
			}
			continue
		case own == "":
			t.Errorf("%s: every package under internal/edge is on a side: %s, %s or %s (or test support %v)", dir, edgeDevice, edgeServer, edgeProto, edgeTestSupport)
			continue
		}
		for imp, files := range p.imports {
			other := side(imp)
			if other == "" || other == own || other == edgeProto && own != edgeProto {
				if other == "" && under(imp, "internal/edge") {
					t.Errorf("%s imports %s (%v): test support is for tests only", dir, imp, files)
				}
				continue
			}
			switch own {
			case edgeProto:
				t.Errorf("%s imports %s (%v): a shared protocol imports only %s/... of internal/edge", dir, imp, files, edgeProto)
			case edgeDevice:
				t.Errorf("%s imports %s (%v): device-side code imports no server-side package (only %s/... and %s/...)", dir, imp, files, edgeDevice, edgeProto)
			case edgeServer:
				t.Errorf("%s imports %s (%v): the control plane imports no device-side package (only %s/... and %s/...)", dir, imp, files, edgeServer, edgeProto)
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
