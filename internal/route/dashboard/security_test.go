package dashboard_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
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
		if !strings.Contains(string(body), `<script type="module" src="/dashboard/app.js">`) {
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
	// The app's modules build no inline handlers or style attributes either.
	mods, err := fs.Glob(dashboard.Static(), "*.js")
	if err != nil {
		t.Fatal(err)
	}
	pageMods, _ := fs.Glob(dashboard.Static(), "pages/*.js")
	if len(mods) < 2 || len(pageMods) < 7 {
		t.Fatalf("modules %v %v: want app.js, lib.js and one per page", mods, pageMods)
	}
	for _, name := range append(mods, pageMods...) {
		js, _ := io.ReadAll(mustOpen(t, name))
		for _, bad := range []string{"innerHTML", "outerHTML =", "insertAdjacentHTML", "setAttribute('style'", `setAttribute("style"`, "eval(", "new Function", "document.write"} {
			if bytes.Contains(js, []byte(bad)) {
				t.Errorf("%s uses %s", name, bad)
			}
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
	// The writes the dashboard's newer pages make: editing a combo,
	// revoking a registered key, the registered-key quotas.
	e.WantError(http.StatusForbidden, "PUT", "/api/combos/x", map[string]any{"strategy": "weighted"}, "Origin", "http://evil.example")
	e.WantError(http.StatusForbidden, "DELETE", "/api/v1/registered-keys/x", nil, "Sec-Fetch-Site", "cross-site")
	e.WantError(http.StatusForbidden, "PUT", "/api/settings/registered-keys", map[string]any{"maxKeysPerAccount": 0}, "Origin", "http://evil.example")
	e.WantError(http.StatusUnsupportedMediaType, "PUT", "/api/combos/x", `{"strategy":"weighted"}`, "Content-Type", "text/plain")
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

// The first load — the page, the files it names, the modules they import
// and the first page's module, gzipped as a browser gets them — stays far
// below 300 KB.
func TestFirstLoadSize(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	total, files := firstLoad(t, e.Srv.URL, "/dashboard/", "/dashboard/pages/providers.js")
	for _, want := range []string{"/dashboard/ui/base.css", "/dashboard/ui/ui.js", "/dashboard/ui/theme.js", "/dashboard/lib.js", "/dashboard/pages/providers.js"} {
		if !slices.Contains(files, want) {
			t.Errorf("the first load did not count %s", want)
		}
	}
	t.Logf("first load: %d bytes compressed over %d files %v", total, len(files), files)
	if total > 300<<10 {
		t.Fatalf("first load is %d bytes compressed, over 300 KB", total)
	}
}

var assetRe = regexp.MustCompile(`(?:src|href)="([^"#:]+)"`)

// firstLoad fetches page and every file it names with gzip and sums the
// bytes transferred.
func firstLoad(t *testing.T, base, page, firstPage string) (int, []string) {
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
	seen := map[string]bool{}
	var fetch func(p string, from string)
	fetch = func(p, from string) {
		if !strings.HasPrefix(p, "/") {
			p = from[:strings.LastIndex(from, "/")+1] + p
		}
		p = path.Clean(p)
		if seen[p] {
			return
		}
		seen[p] = true
		raw := get(p)
		total += len(raw)
		files = append(files, p)
		if !strings.HasSuffix(p, ".js") {
			return
		}
		// A module's static imports load with it (the pages' dynamic
		// import() does not: a page's module loads when it is opened).
		body := raw
		if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil {
			body, _ = io.ReadAll(zr)
		}
		for _, m := range importRe.FindAllSubmatch(body, -1) {
			fetch(string(m[1])+string(m[2]), p)
		}
	}
	for _, m := range assetRe.FindAllSubmatch(html, -1) {
		fetch(string(m[1]), page)
	}
	// The page the dashboard opens first, with what it imports.
	if firstPage != "" {
		fetch(firstPage, page)
	}
	return total, files
}

// importRe finds an ES module's static imports.
var importRe = regexp.MustCompile(`(?m)^import\s[^"]*?from\s+"([^"]+)"|^import\s+"([^"]+)"`)
