package app

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// openAIFormat brings OpenAI itself and any OpenAI-compatible server as
// provider types.
func openAIFormat() feature.Module {
	return feature.Module{Name: "openai", Package: "route/formats/openai", Providers: func(reg *provider.Registry) {
		reg.Register("openai", func(c provider.Config) (router.Adapter, error) {
			base := c.BaseURL
			if base == "" {
				base = "https://api.openai.com/v1"
			}
			return &openai.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
		})
		reg.Register("openai-compatible", func(c provider.Config) (router.Adapter, error) {
			// Many compatible servers predate max_completion_tokens.
			return &openai.Client{BaseURL: c.BaseURL, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID,
				Options: openai.EncodeOptions{LegacyMaxTokens: true}}, nil
		})
	}}
}
