package app

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// responsesFormat brings upstreams speaking the OpenAI Responses API
// (POST {base}/responses), e.g. OpenAI itself for Responses-only models,
// as a provider type.
func responsesFormat() feature.Module {
	return feature.Module{Name: "responses", Package: "route/formats/responses", Providers: func(reg *provider.Registry) {
		reg.Register("openai-responses", func(c provider.Config) (router.Adapter, error) {
			base := c.BaseURL
			if base == "" {
				base = responses.DefaultBaseURL
			}
			return &responses.Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
		})
	}}
}
