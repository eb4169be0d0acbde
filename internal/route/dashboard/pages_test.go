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
	{"routing", "#combo-form"},
	{"playground", "#pg-form"},
	{"usage", "#usage-logs table"},
	{"health", "#breakers"},
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
			p.SetValue("#login-password", admintest.Password)
			p.Click("#login-submit")
			p.WaitVisible("#nav-providers")
			for _, pg := range pages {
				p.Navigate(e.Srv.URL + "/dashboard/#/" + pg.name)
				p.WaitVisible(pg.ready)
				p.CheckLayout(t)
				p.Screenshot(pg.name)
			}
			// The dark theme follows the system's.
			p.ColorScheme("dark")
			p.Navigate(e.Srv.URL + "/dashboard/#/usage")
			p.WaitVisible("#usage-logs table")
			if bg := p.Eval(`getComputedStyle(document.body).backgroundColor`); bg != "rgb(17, 20, 24)" {
				t.Errorf("dark theme background = %v", bg)
			}
			p.Screenshot("usage-dark")
		})
	}
}
