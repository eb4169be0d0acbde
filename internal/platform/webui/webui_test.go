package webui

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func testFS() fstest.MapFS {
	return fstest.MapFS{
		"index.html":    {Data: []byte("<!doctype html><title>dash</title>" + strings.Repeat(" ", 600))},
		"app.js":        {Data: []byte("console.log('x');" + strings.Repeat("/* pad */", 200))},
		"css/style.css": {Data: []byte("body{}")},
	}
}

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServesFilesWithSecurityHeaders(t *testing.T) {
	h, err := New(testFS(), Options{Prefix: "/dashboard"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, ctype string
		status      int
		index       bool
	}{
		{"/dashboard/", "text/html; charset=utf-8", 200, true},
		{"/dashboard", "text/html; charset=utf-8", 200, true},
		{"/dashboard/keys", "text/html; charset=utf-8", 200, true}, // a client-side route
		{"/dashboard/providers/p1/edit", "text/html; charset=utf-8", 200, true},
		{"/dashboard/app.js", "text/javascript; charset=utf-8", 200, false},
		{"/dashboard/css/style.css", "text/css; charset=utf-8", 200, false},
		{"/dashboard/missing.js", "", 404, false},
		{"/elsewhere", "", 404, false},
	} {
		w := get(t, h, "GET", c.path, nil)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d", c.path, w.Code, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		if got := w.Header().Get("Content-Type"); got != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", c.path, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if w.Header().Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", c.path, k, w.Header().Get(k), v)
			}
		}
		if c.index != strings.Contains(w.Body.String(), "<title>dash</title>") {
			t.Errorf("%s: index page served = %v, want %v", c.path, !c.index, c.index)
		}
		if c.index && w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: the page must be revalidated, Cache-Control %q", c.path, w.Header().Get("Cache-Control"))
		}
	}
}

func TestGzipETagAndMethods(t *testing.T) {
	fsys := testFS()
	h, err := New(fsys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := get(t, h, "GET", "/app.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip for a client that takes it: %v", w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, fsys["app.js"].Data) {
		t.Fatal("gzipped body differs from the file")
	}
	if w := get(t, h, "GET", "/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); w.Header().Get("Content-Encoding") != "" || !bytes.Equal(w.Body.Bytes(), fsys["app.js"].Data) {
		t.Fatal("gzip sent to a client that refused it")
	}
	if w := get(t, h, "GET", "/css/style.css", map[string]string{"Accept-Encoding": "gzip"}); w.Header().Get("Content-Encoding") != "" {
		t.Fatal("a tiny file was gzipped")
	}
	etag := w.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if w := get(t, h, "GET", "/app.js", map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Fatalf("revalidation: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := get(t, h, "HEAD", "/app.js", nil); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Fatalf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if w := get(t, h, m, "/app.js", nil); w.Code != http.StatusMethodNotAllowed {
			t.Fatalf("%s: %d", m, w.Code)
		}
	}
}

func TestNeedsIndex(t *testing.T) {
	if _, err := New(fstest.MapFS{"app.js": {Data: []byte("x")}}, Options{}); err == nil {
		t.Fatal("built without an index page")
	}
}

func TestNoIndexServesFilesOnly(t *testing.T) {
	h, err := New(testFS(), Options{Prefix: "/ui/", NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	for path, status := range map[string]int{
		"/ui/app.js":        200,
		"/ui/css/style.css": 200,
		"/ui/":              404,
		"/ui":               404,
		"/ui/keys":          404,
		"/ui/missing.css":   404,
	} {
		w := get(t, h, "GET", path, nil)
		if w.Code != status {
			t.Errorf("%s: status %d, want %d", path, w.Code, status)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no security headers", path)
		}
	}
	if _, err := New(fstest.MapFS{"a.css": {Data: []byte("a{}")}}, Options{NoIndex: true}); err != nil {
		t.Errorf("a directory without index.html: %v", err)
	}
}

func TestStaticHasTheSharedLook(t *testing.T) {
	h, err := New(Static(), Options{Prefix: "/ui/", NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"base.css", "ui.js", "theme.js", "favicon.svg", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE"} {
		if w := get(t, h, "GET", "/ui/"+f, nil); w.Code != 200 {
			t.Errorf("%s: status %d", f, w.Code)
		}
	}
	w := get(t, h, "GET", "/ui/ui.js", nil)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("ui.js Content-Type %q: browsers refuse a module of another type", ct)
	}
}

// TestStaticIsStrictAndSmall keeps the shared files within the CSP (no
// inline styles or scripts, no HTML parsing of data) and within the first
// load budget of a dashboard (300 KB compressed in all).
func TestStaticIsStrictAndSmall(t *testing.T) {
	h, err := New(Static(), Options{NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range h.Files() {
		w := get(t, h, "GET", "/"+f, map[string]string{"Accept-Encoding": "gzip"})
		total += w.Body.Len()
		if strings.HasPrefix(f, "vendor/") {
			continue
		}
		body := string(mustRead(t, f))
		for _, bad := range []string{"innerHTML =", "innerHTML=", "outerHTML =", "insertAdjacentHTML", "document.write", "eval(", "new Function", `style="`, "<style", "setAttribute(\"style\""} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", f, bad)
			}
		}
	}
	if total > 100<<10 {
		t.Errorf("the shared files weigh %d bytes compressed; keep them under 100 KB of a dashboard's 300 KB", total)
	}
	t.Logf("shared files: %d bytes compressed", total)
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(Static(), name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
