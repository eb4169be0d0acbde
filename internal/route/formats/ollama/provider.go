package ollama

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// Type is the provider type Register adds: Ollama servers (local,
// ollama.com, or behind a proxy that checks a key).
const Type = "ollama"

// Register adds the Ollama provider type to reg.
func Register(reg *provider.Registry) {
	reg.Register(Type, New)
}

// Module is the format as a gateway feature (route/feature): the
// provider types Register adds.
func Module() feature.Module {
	return feature.Module{Name: "ollama", Package: "route/formats/ollama", Providers: Register}
}

// New builds the adapter of one Ollama connection; an empty base URL is
// DefaultBaseURL.
func New(c provider.Config) (router.Adapter, error) {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	return &Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
}
