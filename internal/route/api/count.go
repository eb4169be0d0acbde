package api

import (
	"context"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
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
// Gemini's :countTokens): through the gates as a Call marked Count (key
// policy and request-rate limits apply; no tokens or spend are reserved
// or charged), then the router, which asks the target's upstream when
// its adapter counts and estimates otherwise. The source is named in
// HeaderTokenCount on w.
func (s *Server) countTokens(ctx context.Context, w http.ResponseWriter, r *http.Request, req *llm.Request) (int, error) {
	call := &pipeline.Call{KeyID: KeyIDFrom(ctx), Endpoint: r.URL.Path, Model: req.Model, Session: sessionID(r), Request: req,
		Start: s.clock.Now(), Choices: 1, Count: true}
	ctx, finish, err := s.admit(ctx, call)
	if err != nil {
		return 0, err
	}
	res, err := s.router.CountTokens(ctx, req)
	if err != nil {
		finish(s.failed(ctx, err, call.Start))
		return 0, err
	}
	el := s.clock.Now().Sub(call.Start)
	o := pipeline.Outcome{Status: http.StatusOK, Target: res.Target, Attempts: res.Attempts, TTFT: el, Latency: el}
	if n := len(res.Attempts); n > 0 {
		o.Connection = res.Attempts[n-1].Connection
	}
	finish(o)
	source := TokenCountUpstream
	if res.Estimated {
		source = TokenCountEstimated
	}
	w.Header().Set(HeaderTokenCount, source)
	return res.Tokens, nil
}
