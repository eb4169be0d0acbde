package archtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxRoutePackageLines bounds a gateway package's non-test source: past it
// a package holds more than one feature and is split (the format packages,
// one wire format each, are exempt).
const maxRoutePackageLines = 2000

// TestRoutePackagesStaySmall fails when a package under internal/route,
// other than a format package, has more than maxRoutePackageLines lines of
// non-test Go.
func TestRoutePackagesStaySmall(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]int{}
	err = filepath.WalkDir(filepath.Join(root, "internal", "route"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		lines[filepath.ToSlash(rel)] += bytes.Count(b, []byte("\n"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatal("no gateway packages found")
	}
	for dir, n := range lines {
		if strings.HasPrefix(dir, "internal/route/formats/") {
			continue
		}
		if n > maxRoutePackageLines {
			t.Errorf("%s has %d non-test lines, more than %d: split it by feature", dir, n, maxRoutePackageLines)
		}
	}
}
