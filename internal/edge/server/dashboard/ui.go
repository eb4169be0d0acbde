package dashboard

import "net/http"

// uiHandler serves the shared look under /ui/ (nil until it exists).
func uiHandler() http.Handler { return nil }
