package app

import "github.com/omniedge/omni/internal/route/provider"

// registerOpenAI adds the openai and openai-compatible types once the
// OpenAI format package is in place.
func registerOpenAI(*provider.Registry) {}
