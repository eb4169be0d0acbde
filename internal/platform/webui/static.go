package webui

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Static is the look both dashboards share, to be served under each
// product's own prefix (for example "/dashboard/ui/") with NoIndex:
//
//	base.css              the layout, components and light/dark themes
//	theme.js              a classic script for <head>: sets data-theme before the first paint (the
//	                      saved pick, else the system's, followed while nothing is picked)
//	ui.js                 an ES module of small helpers (api, h, table, route, chart, sse, …)
//	favicon.svg           the icon
//	vendor/uPlot.*        the time-series chart library (MIT, see vendor/uPlot.LICENSE)
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}
