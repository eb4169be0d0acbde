// Package provider owns the registry of upstream provider types: each wire
// format package contributes a Factory that builds a router.Adapter for
// one connection (credential) from a Config. The registry is a value, not
// a global: the application decides which types it ships. It also holds
// the catalog of well-known OpenAI-compatible services and their default
// base URLs.
package provider

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/route/router"
)

// Config describes one connection of a provider.
type Config struct {
	ID      string            // provider id, e.g. "openai", "groq", "my-vllm"
	Type    string            // registered type, e.g. "openai", "openai-compatible", "anthropic"
	BaseURL string            // "" for the type's (or catalog's) default
	APIKey  string            // the provider's own credential; never the client's gateway key
	Headers map[string]string // extra upstream headers
	HTTP    *http.Client
}

// Factory builds an adapter for one connection.
type Factory func(Config) (router.Adapter, error)

// Registry maps provider types to factories.
type Registry struct {
	m map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Factory{}} }

// Register adds a type; registering a type twice is a programming error.
func (r *Registry) Register(typ string, f Factory) {
	if _, dup := r.m[typ]; dup {
		panic("provider: type registered twice: " + typ)
	}
	r.m[typ] = f
}

// Types lists the registered types.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.m))
	for t := range r.m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New builds an adapter, filling the base URL of a known OpenAI-compatible
// service from the catalog.
func (r *Registry) New(cfg Config) (router.Adapter, error) {
	f, ok := r.m[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("unknown provider type %q (known: %s)", cfg.Type, strings.Join(r.Types(), ", "))
	}
	if cfg.BaseURL == "" && cfg.Type == "openai-compatible" {
		u, ok := Compatible[cfg.ID]
		if !ok {
			return nil, fmt.Errorf("provider %q of type openai-compatible needs a base_url (known services: %s)", cfg.ID, strings.Join(CompatibleNames(), ", "))
		}
		cfg.BaseURL = u
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("provider %q: base_url %q must be an http(s) URL", cfg.ID, cfg.BaseURL)
		}
		cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	return f(cfg)
}

// Compatible is the catalog of OpenAI-compatible services by provider id,
// with the base URL their chat completions live under.
var Compatible = map[string]string{
	"deepseek":   "https://api.deepseek.com/v1",
	"groq":       "https://api.groq.com/openai/v1",
	"together":   "https://api.together.xyz/v1",
	"mistral":    "https://api.mistral.ai/v1",
	"openrouter": "https://openrouter.ai/api/v1",
	"xai":        "https://api.x.ai/v1",
	"fireworks":  "https://api.fireworks.ai/inference/v1",
	"nebius":     "https://api.studio.nebius.com/v1",
	"perplexity": "https://api.perplexity.ai",
	"cerebras":   "https://api.cerebras.ai/v1",
	"nvidia":     "https://integrate.api.nvidia.com/v1",
	"vllm":       "http://localhost:8000/v1",
	"llamacpp":   "http://localhost:8080/v1",
	"lmstudio":   "http://localhost:1234/v1",
}

// CompatibleNames lists the catalog's ids.
func CompatibleNames() []string {
	out := make([]string, 0, len(Compatible))
	for k := range Compatible {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
