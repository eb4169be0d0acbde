package pipeline

import (
	"context"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// Op is one call of a modality other than chat (rerank, moderation,
// images …): what the gates need to know of it and how to make it at
// one target. A modality's feature module decodes its endpoint's
// request, describes it in an Op, runs it with Engine.Do and encodes
// what its Call stored in the client's shape.
type Op struct {
	Modality llm.Modality
	Model    string // as the client named it: provider/model, alias or combo
	// Units is what the request asks for in every unit its price may be
	// given in, the first being the one usage records count (a rerank:
	// documents, then the search units they make). Budgets reserve the
	// price of these before the call.
	Units []llm.Quantity
	// InputTokens estimates the tokens the upstream may bill (token
	// limits, token prices); 0 when the modality has none.
	InputTokens int
	// Call makes one attempt at connection c of target t (whose
	// upstream model name is t.Model): it type-asserts c.Adapter to the
	// modality's capability, returning a *router.UnsupportedError when it
	// has none, keeps the answer for the handler and reports what the
	// upstream billed. It may be called once per target the router
	// tries; only the successful call's answer is used.
	Call func(ctx context.Context, c router.Connection, t router.Target) (OpUsage, error)
}

// OpUsage is what one successful attempt of an Op used, as its upstream
// reported it.
type OpUsage struct {
	Usage llm.Usage // tokens, zero when the upstream reported none
	// Billed replaces the amounts of Op.Units of the same unit (Cohere's
	// search units); nil: the request's amounts stand.
	Billed []llm.Quantity
}

// OpAnswer is how Do's call was answered.
type OpAnswer struct {
	// Model names the target that answered as "provider/model" (the
	// X-OmniRoute-Model header).
	Model  string
	Target router.Target
	Usage  llm.Usage
	Units  []llm.Quantity // what was recorded and charged
}

// Do runs op through the gates — key policy (allowed models and
// providers), RPM/RPD and token limits, budgets priced in op's units,
// usage records with its modality and units — and the router's
// fallback (router.Do: breakers, cooldowns, the next connection and
// target before the answer). The engine neither caches nor replays an
// operation; a modality that caches (web search) does it in its Call.
// Tokens the upstream did not report are op.InputTokens, estimated.
func (e *Engine) Do(ctx context.Context, o *Origin, op *Op) (*OpAnswer, error) {
	call := &Call{KeyID: o.KeyID, Endpoint: o.Endpoint, Model: op.Model, Session: o.Session, Start: e.Clock.Now(),
		InputTokens: op.InputTokens, Choices: 1, Modality: op.Modality, Units: op.Units}
	ctx, finish, err := e.admit(ctx, call)
	if err != nil {
		return nil, err
	}
	var used OpUsage
	res, err := e.Router.Do(ctx, op.Model, func(ctx context.Context, c router.Connection, t router.Target) error {
		u, err := op.Call(ctx, c, t)
		if err == nil {
			used = u
		}
		return err
	})
	if err != nil {
		out := e.failed(ctx, err, call.Start)
		out.Reserved = call.Reserved
		if a, ok := lastCut(out.Attempts); ok {
			// Sent and cut short: the upstream may bill it (as for chat).
			out.CutShort = true
			out.Target, out.Connection = router.Target{Provider: a.Provider, Model: a.Model}, a.Connection
			out.Usage = llm.Usage{InputTokens: call.InputTokens, Estimated: call.InputTokens > 0}
			out.Units = op.Units
		}
		finish(out)
		e.logFailed(ctx, err, op.Model, &out)
		return nil, err
	}
	if used.Usage.InputTokens == 0 && used.Usage.OutputTokens == 0 && op.InputTokens > 0 {
		used.Usage.InputTokens, used.Usage.Estimated = op.InputTokens, true
	}
	units := billed(op.Units, used.Billed)
	el := e.Clock.Now().Sub(call.Start)
	out := Outcome{Status: StatusOK, Target: res.Target, Attempts: res.Attempts, Usage: used.Usage, TTFT: el, Latency: el,
		Reserved: call.Reserved, Units: units}
	if n := len(res.Attempts); n > 0 {
		out.Connection = res.Attempts[n-1].Connection
	}
	finish(out)
	return &OpAnswer{Model: targetName(op.Model, res.Target), Target: res.Target, Usage: used.Usage, Units: units}, nil
}

// billed is asked with the amounts of the units the upstream reported
// replaced by its figures (and those it reported in other units added).
func billed(asked, reported []llm.Quantity) []llm.Quantity {
	if len(reported) == 0 {
		return asked
	}
	out := append([]llm.Quantity(nil), asked...)
	for _, q := range reported {
		found := false
		for i := range out {
			if out[i].Unit == q.Unit {
				out[i].N, found = q.N, true
			}
		}
		if !found {
			out = append(out, q)
		}
	}
	return out
}
