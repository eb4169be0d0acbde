package dashboard

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/webui"
)

// uiHandler serves the look both products' dashboards share under /ui/.
func uiHandler() (http.Handler, error) {
	return webui.New(webui.Static(), webui.Options{Prefix: "/ui/", NoIndex: true})
}
