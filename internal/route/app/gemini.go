package app

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// geminiFormat brings the Gemini API (generativelanguage) as a provider
// type; base_url includes the API version (default .../v1beta).
func geminiFormat() feature.Module {
	return feature.Module{Name: "gemini", Package: "route/formats/gemini", Providers: func(reg *provider.Registry) {
		reg.Register("gemini", func(c provider.Config) (router.Adapter, error) {
			base := c.BaseURL
			if base == "" {
				base = gemini.DefaultBaseURL
			}
			return &gemini.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
		})
	}}
}
