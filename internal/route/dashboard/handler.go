package dashboard

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/webui"
)

// newHandler serves the app under Prefix.
func newHandler() (http.Handler, error) {
	app, err := webui.New(Static(), webui.Options{Prefix: Prefix})
	if err != nil {
		return nil, err
	}
	return app, nil
}
