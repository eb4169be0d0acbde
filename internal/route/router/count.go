package router

import (
	"context"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// TokenCounter is the optional capability of adapters whose upstream
// counts a request's input tokens with the model's own tokenizer
// (Anthropic's /v1/messages/count_tokens, Gemini's :countTokens). The
// adapter builds the provider's count request from req as it builds a
// chat request, for model (the upstream's name).
type TokenCounter interface {
	CountTokens(ctx context.Context, req *llm.Request, model string) (int, error)
}

// CountTimeout bounds one upstream count attempt (a connection's own
// Timeout, when shorter, bounds it instead): a count answers at once
// or not usefully.
const CountTimeout = 15 * time.Second

// CountResult is the answer to a token count.
type CountResult struct {
	Tokens int
	// Estimated reports that no upstream counted: the target's adapter
	// cannot, or every attempt failed in a way another request would not
	// fix. Tokens is then llm.EstimateInput of the request.
	Estimated bool
	Target    Target    // where the count was asked, or would have been
	Attempts  []Attempt // the upstream attempts made (none when estimated at once)
}

// CountTokens counts req's input tokens for the target req.Model leads
// to. The target is the one a chat request would try first: the session's
// pinned target, else the first target the key may use, in the order the
// alias or combo lists them (no strategy rotation, no health check: a
// count is not a chat attempt and neither moves nor feeds them). When
// that target's adapter is a TokenCounter its connections are asked in
// turn; otherwise, or when none answers, the count is estimated.
//
// An upstream refusal of the request itself (400, 413, 422) is returned:
// the chat request would fail the same way. Credential failures (401,
// 403), rate limits, timeouts, 5xx and transport errors try the next
// connection and then estimate; other answers (404 from an upstream
// without a count endpoint …) estimate at once. Unknown models are a 404
// and models the key may not use a 403, as for chat.
func (r *Router) CountTokens(ctx context.Context, req *llm.Request) (*CountResult, error) {
	targets, _, err := r.catalog.Resolve(req.Model)
	if err != nil {
		return nil, &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Message: err.Error()}
	}
	targets, refused := filterTargets(ctx, targets)
	if len(targets) == 0 {
		return nil, &ExhaustedError{Attempts: refused, Last: &llm.Error{Status: http.StatusForbidden,
			Type: llm.ErrPermission, Message: "model " + req.Model + " is not allowed for this API key"}}
	}
	t := targets[0]
	pinned, sticky := r.pins.get(sessionOf(ctx), r.clock.Now())
	if sticky {
		for _, c := range targets {
			if c.String() == pinned.target {
				t = c
				break
			}
		}
	}
	conns := r.connections(t.Provider)
	if sticky && pinned.target == t.String() {
		conns = stickConnections(conns, pinned)
	}
	res := &CountResult{Target: t}
	estimate := func() (*CountResult, error) {
		res.Tokens, res.Estimated = llm.EstimateInput(req), true
		return res, nil
	}
	for _, c := range conns {
		counter, ok := c.Adapter.(TokenCounter)
		if !ok { // the provider's type has no count endpoint
			return estimate()
		}
		n, err := r.countOnce(ctx, c, counter, req, t)
		a := Attempt{Provider: t.Provider, Model: t.Model, Connection: c.ID, Status: http.StatusOK}
		if err == nil {
			res.Tokens, res.Attempts = n, append(res.Attempts, a)
			return res, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, aborted(cerr, res.Attempts)
		}
		le := asLLMError(err, t.Provider)
		a.Status, a.Error = le.Status, le.Message
		res.Attempts = append(res.Attempts, a)
		switch {
		case le.Status == http.StatusBadRequest || le.Status == http.StatusRequestEntityTooLarge ||
			le.Status == http.StatusUnprocessableEntity:
			return nil, &ExhaustedError{Last: le, Attempts: res.Attempts}
		case le.Status == http.StatusUnauthorized || le.Status == http.StatusForbidden || le.Retryable():
			continue
		}
		break // another connection would get the same answer
	}
	return estimate()
}

// countOnce asks one connection, bounded by CountTimeout or the
// connection's shorter Timeout, and checks the answer is a count.
func (r *Router) countOnce(ctx context.Context, c Connection, counter TokenCounter, req *llm.Request, t Target) (int, error) {
	limit := CountTimeout
	if c.Timeout > 0 && c.Timeout < limit {
		limit = c.Timeout
	}
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if c.Prepare != nil {
		req = c.Prepare(req, t.Model)
	}
	n, err := counter.CountTokens(actx, req, t.Model)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: t.Provider, Message: t.Provider + ": upstream answer unreadable: a negative token count"}
	}
	return n, nil
}
