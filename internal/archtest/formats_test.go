package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// formatRoles is the layout every wire format package under route/formats
// follows, so that the same thing is in the same file in each: a file of
// each role, and the declarations that define the role in it. Methods of
// Client, StreamEncoder and streamDecoder are all in their type's file.
// Other files are free (embed.go, convert.go, generate.go, …).
var formatRoles = []struct {
	file  string
	decls []string // Name, or Type.Method
	doc   string
}{
	{"doc.go", nil, "the package doc comment"},
	{"wire.go", nil, "the wire types"},
	{"inbound.go", []string{"DecodeRequest"}, "client request → llm.Request"},
	{"respond.go", []string{"EncodeResponse", "EncodeError"}, "llm.Response / llm.Error → client answer"},
	{"stream_encode.go", []string{"StreamEncoder", "NewStreamEncoder"}, "llm events → the client's stream"},
	{"outbound.go", []string{"EncodeOptions", "EncodeRequest", "DecodeResponse", "DecodeError"}, "llm.Request → upstream request, upstream answer → llm.Response"},
	{"stream_decode.go", []string{"streamDecoder", "NewStreamDecoder"}, "the upstream's stream → llm events"},
	{"client.go", []string{"Client", "Client.Chat", "Client.Stream"}, "the provider adapter (adapter.Format)"},
	{"provider.go", []string{"Type", "Register", "New", "Module"}, "the provider type's factory and the format's gateway module"},
}

// methodHome is the file every method of a type is declared in.
var methodHome = map[string]string{"Client": "client.go", "StreamEncoder": "stream_encode.go", "streamDecoder": "stream_decode.go"}

// formatDirs lists the format packages: every directory directly under
// route/formats that is neither a helper nor matrix.
func formatDirs(t *testing.T) []string {
	t.Helper()
	root := filepath.Join("..", "..", "internal", "route", "formats")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		dir := "internal/route/formats/" + e.Name()
		if !e.IsDir() || dir == "internal/route/formats/matrix" {
			continue
		}
		helper := false
		for _, h := range formatHelpers {
			helper = helper || h == dir
		}
		if !helper {
			dirs = append(dirs, e.Name())
		}
	}
	sort.Strings(dirs)
	return dirs
}

func TestFormatLayout(t *testing.T) {
	dirs := formatDirs(t)
	if len(dirs) < 5 {
		t.Fatalf("found only the format packages %v; the walk is broken", dirs)
	}
	for _, name := range dirs {
		dir := filepath.Join("..", "..", "internal", "route", "formats", name)
		fset := token.NewFileSet()
		where := map[string]string{} // declaration → file
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, path := range files {
			base := filepath.Base(path)
			if strings.HasSuffix(base, "_test.go") {
				continue
			}
			have[base] = true
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if f.Doc != nil && base != "doc.go" {
				t.Errorf("formats/%s/%s: the package doc comment belongs in doc.go", name, base)
			}
			for _, d := range f.Decls {
				for _, n := range declNames(d) {
					where[n] = base
					typ, _, isMethod := strings.Cut(n, ".")
					if home, ok := methodHome[typ]; ok && isMethod && base != home {
						t.Errorf("formats/%s/%s: method %s belongs in %s with its type", name, base, n, home)
					}
				}
			}
		}
		for _, r := range formatRoles {
			if !have[r.file] {
				t.Errorf("formats/%s: no %s (%s); every format package has the same role files", name, r.file, r.doc)
				continue
			}
			for _, d := range r.decls {
				if got, ok := where[d]; !ok {
					t.Errorf("formats/%s: %s is not declared; it belongs in %s (%s)", name, d, r.file, r.doc)
				} else if got != r.file {
					t.Errorf("formats/%s/%s: %s belongs in %s (%s)", name, got, d, r.file, r.doc)
				}
			}
		}
	}
}

// declNames are the names a top-level declaration declares, methods as
// Type.Method.
func declNames(d ast.Decl) []string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil || len(d.Recv.List) == 0 {
			return []string{d.Name.Name}
		}
		t := d.Recv.List[0].Type
		if s, ok := t.(*ast.StarExpr); ok {
			t = s.X
		}
		if id, ok := t.(*ast.Ident); ok {
			return []string{id.Name + "." + d.Name.Name}
		}
	case *ast.GenDecl:
		var out []string
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				out = append(out, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					out = append(out, n.Name)
				}
			}
		}
		return out
	}
	return nil
}
