package dashboard_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/dashboard"
)

// The page's HTML carries the strict CSP and holds no inline script or
// style; / leads to it.
func TestDashboardPageHeaders(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := c.Get(e.Srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("GET / = %d %q, want a redirect to /dashboard/", r.StatusCode, r.Header.Get("Location"))
	}
	for _, path := range []string{"/dashboard/", "/dashboard/providers"} {
		r, err := http.Get(e.Srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		csp := r.Header.Get("Content-Security-Policy")
		if r.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			!strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("GET %s = %d, CSP %q", path, r.StatusCode, csp)
		}
		if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: headers %v", path, r.Header)
		}
		if !strings.Contains(string(body), `<script type="module" src="app.js">`) {
			t.Fatalf("GET %s is not the dashboard: %s", path, body)
		}
	}
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=`)
	for _, name := range []string{"index.html"} {
		b, err := io.ReadAll(mustOpen(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if m := inline.Find(b); m != nil {
			t.Errorf("%s has inline script or style: %q", name, m)
		}
	}
	// The app builds no inline handlers or style attributes either.
	js, _ := io.ReadAll(mustOpen(t, "app.js"))
	for _, bad := range []string{"innerHTML", "setAttribute('style'", "eval(", "new Function"} {
		if bytes.Contains(js, []byte(bad)) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

func mustOpen(t *testing.T, name string) io.Reader {
	t.Helper()
	f, err := dashboard.Static().Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A page on another origin cannot make the dashboard's writes with the
// operator's cookie: the management API refuses a cross-origin write and
// a body type a form could send; the same write from the dashboard's
// own origin goes through.
func TestCrossOriginWritesRefused(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	body := map[string]any{"name": "stolen"}
	e.WantError(http.StatusForbidden, "POST", "/api/keys", body, "Origin", "http://evil.example")
	e.WantError(http.StatusForbidden, "POST", "/api/keys", body, "Sec-Fetch-Site", "cross-site")
	e.WantError(http.StatusForbidden, "POST", "/api/resilience/reset", map[string]any{}, "Origin", "null")
	e.WantError(http.StatusUnsupportedMediaType, "POST", "/api/keys", `{"name":"stolen"}`, "Content-Type", "text/plain")
	e.WantError(http.StatusForbidden, "DELETE", "/api/providers/x", nil, "Origin", "http://evil.example")
	if keys := e.Want(http.StatusOK, "GET", "/api/keys", nil).Body; strings.Contains(string(keys), "stolen") {
		t.Fatalf("a cross-origin write made a key: %s", keys)
	}
	e.Want(http.StatusCreated, "POST", "/api/keys", body, "Origin", e.Srv.URL, "Sec-Fetch-Site", "same-origin")
}

// A provider's key never comes back to the page once saved.
func TestProviderSecretsNotReturned(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	up := newUpstream(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "fake", "type": "openai-compatible",
		"base_url": up.URL, "api_key": upstreamSecret, "models": []string{"m1"}, "headers": map[string]string{"X-Api-Key": upstreamSecret}})
	for _, path := range []string{"/api/providers", "/api/providers/fake", "/api/models/catalog", "/api/provider-models?provider=fake"} {
		if b := e.Want(http.StatusOK, "GET", path, nil).Body; strings.Contains(string(b), upstreamSecret) || strings.Contains(string(b), upstreamSecret[3:20]) {
			t.Errorf("GET %s returns the provider's key: %s", path, b)
		}
	}
}

// The first load — the page and the files it names, gzipped as a
// browser gets them — stays far below 300 KB.
func TestFirstLoadSize(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	total, files := firstLoad(t, e.Srv.URL, "/dashboard/")
	t.Logf("first load: %d bytes compressed over %d files %v", total, len(files), files)
	if total > 300<<10 {
		t.Fatalf("first load is %d bytes compressed, over 300 KB", total)
	}
}

var assetRe = regexp.MustCompile(`(?:src|href)="([^"#:]+)"`)

// firstLoad fetches page and every file it names with gzip and sums the
// bytes transferred.
func firstLoad(t *testing.T, base, page string) (int, []string) {
	get := func(path string) []byte {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		r, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, r.StatusCode)
		}
		return b
	}
	raw := get(page)
	total, files := len(raw), []string{page}
	html := raw
	if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil {
		html, _ = io.ReadAll(zr)
	}
	for _, m := range assetRe.FindAllSubmatch(html, -1) {
		p := string(m[1])
		if !strings.HasPrefix(p, "/") {
			p = page + p
		}
		total += len(get(p))
		files = append(files, p)
	}
	return total, files
}
