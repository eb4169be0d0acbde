package openai

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// The provider types Register adds: OpenAI itself, and any
// OpenAI-compatible server (the catalog's services, or one at a base
// URL).
const (
	Type           = "openai"
	TypeCompatible = "openai-compatible"
)

// Register adds the OpenAI and OpenAI-compatible provider types to reg.
func Register(reg *provider.Registry) {
	reg.Register(Type, New)
	reg.Register(TypeCompatible, NewCompatible)
}

// Module is the format as a gateway feature (route/feature): the
// provider types Register adds.
func Module() feature.Module {
	return feature.Module{Name: "openai", Package: "route/formats/openai", Providers: Register}
}

// New builds the adapter of one OpenAI connection; an empty base URL is
// DefaultBaseURL.
func New(c provider.Config) (router.Adapter, error) {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	return &Client{BaseURL: base, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID}, nil
}

// NewCompatible builds the adapter of one OpenAI-compatible connection
// (the registry fills a catalog service's base URL). Many compatible
// servers predate max_completion_tokens, so max_tokens is sent.
func NewCompatible(c provider.Config) (router.Adapter, error) {
	return &Client{BaseURL: c.BaseURL, APIKey: c.APIKey, HTTP: c.HTTP, Headers: c.Headers, Provider: c.ID,
		Options: EncodeOptions{LegacyMaxTokens: true}}, nil
}
