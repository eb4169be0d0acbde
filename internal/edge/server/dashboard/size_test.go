package dashboard_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/omniedge/omni/internal/edge/server/dashboard"
)

// The first load (the page and every asset it names, as a browser
// fetches them: gzipped) stays within 300 KB.
func TestFirstLoadSize(t *testing.T) {
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, gz bool) (int, string) {
		req := httptest.NewRequest("GET", path, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rec.Code)
		}
		return rec.Body.Len(), rec.Body.String()
	}
	total, _ := get("/", true)
	_, index := get("/", false)
	assets := regexp.MustCompile(`<(?:link[^>]*href|script[^>]*src)="(/[^"]+)"`).FindAllStringSubmatch(index, -1)
	if len(assets) < 3 {
		t.Fatalf("index names %d assets: %v", len(assets), assets)
	}
	// Modules the scripts import load too (ui.js from app.js).
	imports := regexp.MustCompile(`(?m)^import[^;]*?from\s*"(/[^"]+)"`)
	seen := map[string]bool{}
	var names []string
	for len(assets) > 0 {
		a := assets[0][1]
		assets = assets[1:]
		if seen[a] {
			continue
		}
		seen[a] = true
		names = append(names, a)
		n, _ := get(a, true)
		total += n
		_, body := get(a, false)
		assets = append(assets, imports.FindAllStringSubmatch(body, -1)...)
	}
	if !seen["/ui/ui.js"] {
		t.Errorf("the imports of the first load %v lack /ui/ui.js", names)
	}
	t.Logf("first load: %d bytes gzipped (index + %v)", total, names)
	if total > 300<<10 {
		t.Errorf("first load %d bytes, over 300 KB", total)
	}
}
