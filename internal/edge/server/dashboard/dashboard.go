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
	app *webui.Handler
	ui  http.Handler
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
	return &Handler{app: app, ui: ui}, nil
}

// ServeHTTP answers the dashboard's pages and assets.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/ui/") {
		h.ui.ServeHTTP(w, r)
		return
	}
	h.app.ServeHTTP(w, r)
}

// SetHeaders sets the dashboard's security headers on a page rendered
// elsewhere in its look (the browser-login approval page).
func (h *Handler) SetHeaders(w http.ResponseWriter) { h.app.SetHeaders(w) }
