package dashboard_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// pages are the dashboard's pages, each with an element that shows it
// has loaded its data.
var pages = []struct{ name, ready string }{
	{"providers", "#providers-list table"},
	{"keys", "#keys-list table"},
	{"routing", "#combos-list table"},
	{"playground", "#pg-form"},
	{"usage", "#usage-logs table"},
	{"health", "#breakers .empty"},
	{"settings", "#resilience-form"},
}

// Every page loads at phone and desktop widths without a console error,
// a failed request or anything wider than the viewport, with data in its
// tables (a provider, a key, a combo and a logged request).
func TestEveryPageFits(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	run(t, e)
	e.Login()
	up := newUpstream(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "fake", "type": "openai-compatible",
		"base_url": up.URL, "api_key": upstreamSecret, "models": []string{"m1", "a-model-with-a-rather-long-name-to-wrap"}})
	key := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "ci"}).Object(t)["key"].(string)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "fast", "targets": []string{"fake/m1", "fake/a-model-with-a-rather-long-name-to-wrap"}})
	e.Want(http.StatusOK, "POST", "/v1/chat/completions", admintest.Chat("fake/m1"), admintest.Bearer(key)...)

	b := browser.New(t)
	for _, width := range []int{390, 1280} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			p := b.Page(t, width, 800)
			p.Navigate(e.Srv.URL + "/dashboard/")
			p.WaitVisible("#login-form")
			p.CheckLayout(t)
			p.Screenshot("login")
			p.SetValue("#login-password", admintest.Password)
			p.Click("#login-submit")
			p.WaitVisible(".topbar .theme-toggle")
			// Both themes: the system's light, then its dark (theme.js
			// follows it while the user has picked none).
			for _, scheme := range []string{"light", "dark"} {
				p.ColorScheme(scheme)
				for _, pg := range pages {
					p.Navigate(e.Srv.URL + "/dashboard/" + pg.name)
					p.WaitVisible(pg.ready)
					if got := browser.Eval[string](p, `document.documentElement.dataset.theme + " " + getComputedStyle(document.body).backgroundColor`); got != scheme+" "+background[scheme] {
						t.Errorf("%s in the %s theme: theme and background %q", pg.name, scheme, got)
					}
					p.CheckLayout(t)
					name := pg.name
					if scheme == "dark" {
						name += "-dark"
					}
					p.Screenshot(name)
				}
			}
		})
	}
}

// background is the page's background in each theme (base.css --bg).
var background = map[string]string{"light": "rgb(245, 246, 248)", "dark": "rgb(17, 20, 24)"}
