// Package dashboard serves the OmniEdge web dashboard: a single-page app
// embedded in the binary (plain ES modules, no build step) at "/" on the
// edge listener, and the shared look of both products' dashboards under
// "/ui/". The pages are clients of the public JSON API (docs/edge-api.md)
// only, authenticated by the dashboard session cookie the API sets; this
// package holds no state and answers no API of its own.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/platform/webui"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files.
type Handler struct {
	app   *webui.Handler
	ui    http.Handler
	files map[string]bool // the embedded files' paths
}

// New builds the handler from the embedded files.
func New() (*Handler, error) {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	app, err := webui.New(sub, webui.Options{Prefix: "/"})
	if err != nil {
		return nil, err
	}
	ui, err := uiHandler()
	if err != nil {
		return nil, err
	}
	files := map[string]bool{}
	for _, f := range app.Files() {
		files[f] = true
	}
	return &Handler{app: app, ui: ui, files: files}, nil
}

// pages are the dashboard's own client-side routes (and their
// subpaths): every other path without a file is a 404, so a path the
// listener does not serve (/metrics on the public port) is not answered
// with the page.
var pages = []string{"/networks", "/devices", "/keys", "/servers"}

// ServeHTTP answers the dashboard's pages and assets, and a plain 404 for
// everything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/ui/") {
		h.ui.ServeHTTP(w, r)
		return
	}
	if p == "/" || h.files[strings.TrimPrefix(p, "/")] {
		h.app.ServeHTTP(w, r)
		return
	}
	for _, pg := range pages {
		if p == pg || strings.HasPrefix(p, pg+"/") {
			h.app.ServeHTTP(w, r)
			return
		}
	}
	h.app.SetHeaders(w)
	http.NotFound(w, r)
}

// SetHeaders sets the dashboard's security headers on a page rendered
// elsewhere in its look (the browser-login approval page).
func (h *Handler) SetHeaders(w http.ResponseWriter) { h.app.SetHeaders(w) }
