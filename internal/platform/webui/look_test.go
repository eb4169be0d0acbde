package webui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/platform/webui"
)

// lookServer serves testdata/look (a page made of every shared
// component) at / and the shared files at /ui/, both through webui.
func lookServer(t *testing.T) *httptest.Server {
	t.Helper()
	page, err := webui.New(os.DirFS("testdata/look"), webui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	shared, err := webui.New(webui.Static(), webui.Options{Prefix: "/ui/", NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", page)
	mux.Handle("/ui/", shared)
	mux.HandleFunc("POST /api/fail", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "json only", http.StatusUnsupportedMediaType)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"invalid_request","message":"name: must not be empty","status":400}}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestSharedLookInABrowser(t *testing.T) {
	srv := lookServer(t)
	b := browser.New(t)
	for _, size := range []struct{ w, h int }{{390, 844}, {1280, 800}} {
		for _, scheme := range []string{"light", "dark"} {
			t.Run(fmt.Sprintf("%d-%s", size.w, scheme), func(t *testing.T) {
				p := b.Page(t, size.w, size.h)
				p.AllowStatus(400, "/api/fail")
				p.ColorScheme(scheme)
				p.Navigate(srv.URL + "/")
				p.WaitText("main h1", "Components")
				p.WaitVisible(`body[data-chart="1"] .uplot canvas`)
				if got := browser.Eval[string](p, `getComputedStyle(document.body).backgroundColor`); (scheme == "dark") != (got == "rgb(17, 20, 24)") {
					t.Errorf("%s theme: body background %s", scheme, got)
				}
				// An API error shows its message next to the button.
				p.Click("#fail")
				p.WaitText(".error[role=alert]", "name: must not be empty")
				p.CheckLayout(t)
				p.Screenshot("components-" + scheme)

				// A stacked table: a header on a desktop, labelled cards on a phone.
				if got := browser.Eval[string](p, `getComputedStyle(document.querySelector("table.stack thead")).display + " " + getComputedStyle(document.querySelector("table.stack td"), "::before").content`); (size.w < 800) != (got == `none "Name"`) {
					t.Errorf("stacked table at %d px: thead display and cell label %s", size.w, got)
				}
				// The nav: always there on a desktop, behind the menu button on a phone.
				if size.w < 800 {
					if browser.Eval[bool](p, `getComputedStyle(document.getElementById("nav")).display !== "none"`) {
						t.Error("the nav is open at 390px before the menu button is pressed")
					}
					p.Click(".nav-toggle")
					p.WaitVisible("#nav a[href='/empty']")
					if got := browser.Eval[string](p, `document.querySelector(".nav-toggle").getAttribute("aria-expanded")`); got != "true" {
						t.Errorf("menu button aria-expanded %q", got)
					}
					p.Screenshot("nav-open-" + scheme)
				}
				goTo := func(href string) {
					t.Helper()
					if size.w < 800 && !browser.Eval[bool](p, `document.querySelector(".app").classList.contains("nav-open")`) {
						p.Click(".nav-toggle")
					}
					p.Click("#nav a[href='" + href + "']")
				}
				goTo("/empty")
				p.WaitText("main h1", "Empty states")
				p.WaitText("main", "Create a key to let a tool call the gateway.")
				if got := browser.Eval[string](p, `document.querySelector("#nav a[aria-current=page]").textContent`); got != "Empty states" {
					t.Errorf("current nav link %q", got)
				}
				if browser.Eval[string](p, `document.body.dataset.ready`) != "1" {
					t.Error("the router reloaded the page on a link click")
				}
				p.CheckLayout(t)
				p.Screenshot("empty-" + scheme)

				goTo("/form")
				p.WaitText("main h1", "Form")
				p.Click("button[type=submit]")
				p.WaitText("form .error[role=alert]", "must not be empty")
				p.WaitText(".toasts", "Saved")
				p.CheckLayout(t)
				p.Screenshot("form-" + scheme)

				p.Navigate(srv.URL + "/")
				p.WaitText("main h1", "Components")
				p.Click("#delete")
				p.WaitVisible("dialog[open]")
				p.Screenshot("dialog-" + scheme)
				p.Click("dialog[open] button[value=cancel]")
				p.WaitGone("dialog")
				if got := browser.Eval[string](p, `document.body.dataset.confirmed`); got != "false" {
					t.Errorf("confirmDialog cancelled = %q", got)
				}
			})
		}
	}
}

func TestThemeToggleIsRemembered(t *testing.T) {
	srv := lookServer(t)
	b := browser.New(t)
	p := b.Page(t, 1280, 800)
	p.ColorScheme("light")
	p.Navigate(srv.URL + "/empty")
	p.WaitText("main h1", "Empty states")
	p.Click(".theme-toggle")
	if got := browser.Eval[string](p, `document.documentElement.dataset.theme + "/" + localStorage.getItem("omni-theme")`); got != "dark/dark" {
		t.Fatalf("after the toggle: theme/stored = %q", got)
	}
	p.Navigate(srv.URL + "/empty")
	p.WaitText("main h1", "Empty states")
	if got := browser.Eval[string](p, `document.documentElement.dataset.theme`); got != "dark" {
		t.Errorf("after a reload the theme is %q, want the remembered dark", got)
	}
	if got := browser.Eval[string](p, `getComputedStyle(document.body).backgroundColor`); got != "rgb(17, 20, 24)" {
		t.Errorf("remembered dark theme not applied: background %s", got)
	}
	if got := browser.Eval[string](p, `document.querySelector(".theme-toggle").getAttribute("aria-label")`); got != "Switch to light theme" {
		t.Errorf("toggle label %q", got)
	}

	// A chart follows the theme: it is redrawn with the other colours.
	p.Navigate(srv.URL + "/")
	p.WaitVisible(`body[data-chart="1"] .uplot canvas`)
	p.Click(".theme-toggle")
	p.WaitVisible(".uplot canvas")
	if n := browser.Eval[int](p, `document.querySelectorAll("#chart .uplot").length`); n != 1 {
		t.Errorf("%d charts after the theme changed, want 1", n)
	}
	p.Screenshot("components-toggled-light")
}

// TestHelpers runs ui.js's pure helpers in the browser.
func TestHelpers(t *testing.T) {
	srv := lookServer(t)
	b := browser.New(t)
	p := b.Page(t, 1280, 800)
	p.AllowStatus(400, "/api/fail")
	p.Navigate(srv.URL + "/empty")
	p.WaitText("main h1", "Empty states")
	got := browser.Eval[map[string]string](p, `import("/ui/ui.js").then(async m => {
		const out = {};
		out.bytes = [0, 1023, 1536, 5 * 1024 * 1024, 3.5 * 1024 ** 3].map(m.formatBytes).join("|");
		out.number = m.formatNumber(1234567.891) + "|" + m.formatNumber(1234567, {compact: true});
		out.duration = [850, 1234, 65000].map(m.formatDuration).join("|");
		out.cost = [0, 0.00123, 3.4].map(m.formatCost).join("|");
		out.ago = [m.formatAgo(null), m.formatAgo(Date.now() - 5 * 60e3), m.formatAgo((Date.now() - 7200e3) / 1000)].join("|");
		out.time = m.formatTime(0) + "|" + (m.formatTime(1764892800) === m.formatTime(1764892800000));
		const el = m.h("p", {class: "x", "data-k": "v", onClick: () => {}}, "<b>not html</b>", 3, null, ["a", m.h("i", null, "b")]);
		out.h = el.outerHTML;
		const t = m.table([{label: "N", key: "n"}, {label: "V", num: true, value: r => r.v * 2}], [{n: "<i>", v: 2}]);
		out.table = t.outerHTML;
		out.empty = m.table([{label: "N", key: "n"}], [], {empty: "Add one."}).outerHTML;
		out.stack = m.table([{label: "N", key: "n"}, {label: "", value: () => "x"}], [{n: "a"}], {stack: true}).outerHTML;
		try { await m.api("POST", "/api/fail", {name: ""}); out.api = "no error"; }
		catch (e) { out.api = e.name + "|" + e.status + "|" + e.code + "|" + e.message; }
		try { m.h("div", {style: "color:red"}); out.style = "allowed"; } catch (e) { out.style = "refused"; }
		const box = m.h("div");
		m.showError(box, new Error("boom"));
		out.shown = box.innerHTML;
		m.showError(box, null);
		out.cleared = String(box.querySelector(".error").hidden);
		return out;
	})`)
	want := map[string]string{
		"bytes":    "0 B|1023 B|1.5 KB|5.0 MB|3.5 GB",
		"number":   "1,234,567.89|1.2M",
		"duration": "850 ms|1.2 s|1 min 5 s",
		"cost":     "$0.00|$0.0012|$3.40",
		"ago":      "never|5 min ago|2 h ago",
		"time":     "—|true",
		"h":        `<p class="x" data-k="v">&lt;b&gt;not html&lt;/b&gt;3a<i>b</i></p>`,
		"table":    `<div class="table-wrap"><table><thead><tr><th scope="col">N</th><th class="num" scope="col">V</th></tr></thead><tbody><tr><td>&lt;i&gt;</td><td class="num">4</td></tr></tbody></table></div>`,
		"empty":    `<div class="empty"><p>Add one.</p></div>`,
		"stack":    `<div class="table-wrap"><table class="stack"><thead><tr><th scope="col">N</th><th scope="col"></th></tr></thead><tbody><tr><td data-label="N"><div class="cell">a</div></td><td data-label=""><div class="cell">x</div></td></tr></tbody></table></div>`,
		"api":      "ApiError|400|invalid_request|name: must not be empty",
		"style":    "refused",
		"shown":    `<div class="error" role="alert">boom</div>`,
		"cleared":  "true",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if strings.Contains(got["h"], "<b>") {
		t.Error("h() parsed HTML from a string")
	}
}

// theme.js always sets data-theme: the system's while the user has
// picked none (following it when it changes, without a reload), the
// user's pick once made (no longer following the system).
func TestThemeFollowsTheSystemUntilPicked(t *testing.T) {
	srv := lookServer(t)
	p := browser.New(t).Page(t, 1280, 800)
	// theme waits a moment for want (the media change reaches the page
	// as an event) and returns what the page shows.
	theme := func(want string) string {
		var got string
		for i := 0; i < 50; i++ {
			got = browser.Eval[string](p, `document.documentElement.dataset.theme + " " + getComputedStyle(document.body).backgroundColor`)
			if got == want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return got
	}
	p.ColorScheme("dark")
	p.Navigate(srv.URL + "/empty")
	p.WaitText("main h1", "Empty states")
	if got := theme("dark rgb(17, 20, 24)"); got != "dark rgb(17, 20, 24)" {
		t.Fatalf("system dark: %q", got)
	}
	p.ColorScheme("light")
	if got := theme("light rgb(245, 246, 248)"); got != "light rgb(245, 246, 248)" {
		t.Errorf("after the system turned light: %q", got)
	}
	if got := browser.Eval[string](p, `document.querySelector(".theme-toggle").getAttribute("aria-label")`); got != "Switch to dark theme" {
		t.Errorf("toggle label after the system changed: %q", got)
	}
	p.Click(".theme-toggle") // picks dark
	p.ColorScheme("dark")
	p.ColorScheme("light")
	time.Sleep(200 * time.Millisecond) // a change event would have come by now
	if got := theme("dark rgb(17, 20, 24)"); got != "dark rgb(17, 20, 24)" {
		t.Errorf("a picked theme followed the system: %q", got)
	}
	p.Navigate(srv.URL + "/empty")
	p.WaitText("main h1", "Empty states")
	if got := theme("dark rgb(17, 20, 24)"); got != "dark rgb(17, 20, 24)" {
		t.Errorf("the pick was not kept over a reload: %q", got)
	}
}
