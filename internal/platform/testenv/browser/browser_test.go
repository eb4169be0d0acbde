package browser

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

const cleanPage = `<!doctype html><html><head><meta charset="utf-8"><title>clean</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/clean.css"><script src="/clean.js"></script></head>
<body><h1 id="title">Hello</h1><label for="name">Name</label><input id="name">
<button id="go" type="button">Go</button><p id="out"></p>
<div class="scroller"><table class="wide"><tr><td>a very wide table that scrolls inside its own box</td></tr></table></div>
</body></html>`

const cleanJS = `document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("go").addEventListener("click", async () => {
    const r = await fetch("/api/me");
    document.getElementById("out").textContent = "hi " + document.getElementById("name").value + " " + r.status;
  });
});`

const cleanCSS = `.scroller{overflow-x:auto;max-width:100%} .wide{width:2000px}`

const brokenPage = `<!doctype html><html><head><meta charset="utf-8"><title>broken</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/broken.css"><script src="/broken.js"></script></head>
<body><div id="wide" class="too-wide">wide</div><p id="done"></p></body></html>`

const brokenJS = `console.error("boom from the page");
fetch("/api/missing").then(() => fetch("http://127.0.0.1:1/refused")).catch(() => {}).finally(() => {
  document.getElementById("done").textContent = "done";
  setTimeout(() => { throw new Error("uncaught kaboom"); }, 0);
});`

func server(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	file := func(ctype, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			_, _ = w.Write([]byte(body))
		}
	}
	mux.HandleFunc("GET /clean", file("text/html; charset=utf-8", cleanPage))
	mux.HandleFunc("GET /clean.js", file("text/javascript", cleanJS))
	mux.HandleFunc("GET /clean.css", file("text/css", cleanCSS))
	mux.HandleFunc("GET /broken", file("text/html; charset=utf-8", brokenPage))
	mux.HandleFunc("GET /broken.js", file("text/javascript", brokenJS))
	mux.HandleFunc("GET /broken.css", file("text/css", `.too-wide{width:3000px;height:20px}`))
	mux.HandleFunc("GET /csp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><link rel="icon" href="data:,"></head><body><p id="p" style="color:red">inline</p><script>document.title = "ran"</script></body></html>`))
	})
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"login required"}`, http.StatusUnauthorized)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestCleanPagePasses(t *testing.T) {
	srv := server(t)
	b := New(t)
	p := b.Page(t, 390, 800)
	p.AllowStatus(401, "/api/me")
	p.Navigate(srv.URL + "/clean")
	if got := p.Text("#title"); got != "Hello" {
		t.Fatalf("title %q", got)
	}
	p.Type("#name", "Ada")
	p.Click("#go")
	if got := p.WaitText("#out", "401"); got != "hi Ada 401" {
		t.Fatalf("out %q", got)
	}
	p.SetValue("#name", "Grace")
	if got := Eval[string](p, `document.getElementById("name").value`); got != "Grace" {
		t.Fatalf("value %q", got)
	}
	if n := Eval[int](p, `Promise.resolve(41 + 1)`); n != 42 {
		t.Fatalf("eval %d", n)
	}
	p.CheckLayout(t)

	file := p.Screenshot("clean")
	b2, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b2))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if w := img.Bounds().Dx(); w != 390 {
		t.Errorf("screenshot width %d, want 390", w)
	}
}

func TestProblemsAreCaught(t *testing.T) {
	srv := server(t)
	b := New(t)
	p := b.Page(t, 390, 600)
	p.Navigate(srv.URL + "/broken")
	p.WaitText("#done", "done")
	p.Eval(`new Promise(r => setTimeout(r, 100))`) // let the thrown error land
	got := p.TakeProblems()
	var all []string
	for _, pr := range got {
		all = append(all, pr.String())
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{"console: boom from the page", "status: 404 " + srv.URL + "/api/missing",
		"request: net::ERR_", "127.0.0.1:1/refused", "exception: Uncaught Error: uncaught kaboom"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problem %q not caught; got:\n%s", want, joined)
		}
	}
	o := p.Overflow()
	if len(o) != 2 || !strings.HasPrefix(o[0], "document:") || !strings.HasPrefix(o[1], "div#wide.too-wide: right edge 3008 > 390") {
		t.Errorf("overflow %q", o)
	}
	ft := &fakeT{TB: t}
	p.CheckLayout(ft)
	if !ft.failed {
		t.Error("CheckLayout passed a page wider than the viewport")
	}
}

func TestCSPViolationsAreCaught(t *testing.T) {
	srv := server(t)
	b := New(t)
	p := b.Page(t, 800, 600)
	p.Navigate(srv.URL + "/csp")
	p.Eval(`new Promise(r => setTimeout(r, 100))`)
	var all []string
	for _, pr := range p.TakeProblems() {
		all = append(all, pr.String())
	}
	joined := strings.Join(all, "\n")
	if !strings.Contains(joined, "log: security: Executing inline script violates") || !strings.Contains(joined, "log: security: Applying inline style violates") {
		t.Errorf("inline script and style under a strict CSP not reported as problems; got:\n%s", joined)
	}
}

func TestAllowStatusMatchesStatusAndPath(t *testing.T) {
	p := &Page{}
	p.AllowStatus(401, "/api/auth/me")
	for _, c := range []struct {
		status int
		url    string
		ok     bool
	}{
		{401, "http://x/api/auth/me", true},
		{401, "http://x/api/auth/me?x=1", true},
		{403, "http://x/api/auth/me", false},
		{401, "http://x/api/keys", false},
	} {
		if got := p.allowedLocked(c.status, c.url); got != c.ok {
			t.Errorf("%d %s: allowed %v, want %v", c.status, c.url, got, c.ok)
		}
	}
}

type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Helper()               {}
