package gemini

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// Type is the provider type Register adds: the Gemini API
// (generativelanguage), whose base URL includes the API version.
const Type = "gemini"

// Register adds the Gemini provider type to reg.
func Register(reg *provider.Registry) {
	reg.Register(Type, New)
}

// Module is the format as a gateway feature (route/feature): the
// provider types Register adds.
func Module() feature.Module {
	return feature.Module{Name: "gemini", Package: "route/formats/gemini", Providers: Register}
}

// New builds the adapter of one Gemini connection; an empty base URL is
// DefaultBaseURL (…/v1beta).
func New(c provider.Config) (router.Adapter, error) {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	return &Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
}
