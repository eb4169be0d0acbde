package app

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// ollamaFormat brings Ollama servers (local, ollama.com, or behind a
// proxy that checks a key) as a provider type.
func ollamaFormat() feature.Module {
	return feature.Module{Name: "ollama", Package: "route/formats/ollama", Providers: func(reg *provider.Registry) {
		reg.Register("ollama", func(c provider.Config) (router.Adapter, error) {
			base := c.BaseURL
			if base == "" {
				base = ollama.DefaultBaseURL
			}
			return &ollama.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
		})
	}}
}
