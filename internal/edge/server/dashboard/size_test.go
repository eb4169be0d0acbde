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
	for _, m := range assets {
		n, _ := get(m[1], true)
		total += n
	}
	t.Logf("first load: %d bytes gzipped (index + %d assets)", total, len(assets))
	if total > 300<<10 {
		t.Errorf("first load %d bytes, over 300 KB", total)
	}
}
