// Package dashboard owns the OmniRoute web dashboard: the single-page
// app embedded in the binary and served under /dashboard/ on the
// gateway's listener (with the shared look under /dashboard/ui/), and the
// redirect from / to it. The app is a client of the public management
// API only: every action it offers is a call the route list documents,
// behind the same login and browser checks as any other client's.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/webui"
	"github.com/omniedge/omni/internal/route/feature"
)

//go:embed static
var files embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/dashboard/"

// Dashboard serves the embedded app.
type Dashboard struct {
	app, shared http.Handler
}

// Static returns the dashboard's own files (index.html, app.js …).
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}

// New builds the dashboard handler.
func New() (*Dashboard, error) {
	app, err := webui.New(Static(), webui.Options{Prefix: Prefix})
	if err != nil {
		return nil, err
	}
	shared, err := webui.New(webui.Static(), webui.Options{Prefix: Prefix + "ui/", NoIndex: true})
	if err != nil {
		return nil, err
	}
	return &Dashboard{app: app, shared: shared}, nil
}

// Handler is the dashboard's handler for every path under Prefix.
func (d *Dashboard) Handler() http.Handler { return d.app }

// Module declares the dashboard: GET / redirects to it, GET /dashboard/…
// serves it and GET /dashboard/ui/… the look both dashboards share
// (platform/webui: the chart library). Both are public: the page itself holds nothing, and every
// call it makes needs the management login.
func (d *Dashboard) Module() feature.Module {
	return feature.Module{
		Name:    "dashboard",
		Package: "route/dashboard",
		Routes:  func(mux feature.Mux) { d.Register(mux) },
	}
}

// Register adds the dashboard's routes to mux.
func (d *Dashboard) Register(mux feature.Mux) {
	mux.Handle("GET /{$}", httpx.WithAuth("public", http.RedirectHandler(Prefix, http.StatusFound)))
	mux.Handle("GET "+Prefix, httpx.WithAuth("public", d.app))
	mux.Handle("GET "+Prefix+"ui/", httpx.WithAuth("public", d.shared))
}
