package app

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// anthropicFormat brings the Anthropic Messages API as a provider type.
func anthropicFormat() feature.Module {
	return feature.Module{Name: "anthropic", Package: "route/formats/anthropic", Providers: func(reg *provider.Registry) {
		reg.Register("anthropic", func(c provider.Config) (router.Adapter, error) {
			base := c.BaseURL
			if base == "" {
				base = anthropic.DefaultBaseURL
			}
			return &anthropic.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
		})
	}}
}
