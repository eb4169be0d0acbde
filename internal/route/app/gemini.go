package app

import (
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// registerGemini adds the Gemini API (generativelanguage); base_url
// includes the API version (default .../v1beta).
func registerGemini(reg *provider.Registry) {
	reg.Register("gemini", func(c provider.Config) (router.Adapter, error) {
		base := c.BaseURL
		if base == "" {
			base = gemini.DefaultBaseURL
		}
		return &gemini.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
	})
}
