package api

import (
	"context"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// HeaderTokenCount says where the answer of a token count came from:
// TokenCountUpstream when the provider counted with the model's own
// tokenizer, TokenCountEstimated when the gateway estimated (about 4
// bytes per token).
const (
	HeaderTokenCount    = "X-OmniRoute-Token-Count"
	TokenCountUpstream  = "upstream"
	TokenCountEstimated = "estimated"
)

// countTokens counts req's input tokens (Anthropic's count_tokens,
// Gemini's :countTokens) through the engine (pipeline.Engine.CountTokens)
// and names the source in HeaderTokenCount on w.
func (s *Server) countTokens(ctx context.Context, w http.ResponseWriter, r *http.Request, req *llm.Request) (int, error) {
	o := origin(ctx, r)
	res, err := s.engine.CountTokens(ctx, &o, req)
	if err != nil {
		return 0, err
	}
	source := TokenCountUpstream
	if res.Estimated {
		source = TokenCountEstimated
	}
	w.Header().Set(HeaderTokenCount, source)
	return res.Tokens, nil
}
