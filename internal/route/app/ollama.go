package app

import (
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// registerOllama adds Ollama servers (local, ollama.com, or behind a proxy
// that checks a key).
func registerOllama(reg *provider.Registry) {
	reg.Register("ollama", func(c provider.Config) (router.Adapter, error) {
		base := c.BaseURL
		if base == "" {
			base = ollama.DefaultBaseURL
		}
		return &ollama.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
	})
}
