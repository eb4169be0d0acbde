// Package pipeline is the gateway's request pipeline, which every routed
// request (all five client dialects) passes through:
//
//	rewriters → idempotency → gates (key policies, limits, budgets, accounting) → cache → router
//
// It owns both its contract and its engine. The contract is what the
// stages and the engine share: the Rewriter that changes a request
// before the others see it, the Call a gate admits and the Outcome it
// learns, the Gate, ModelPolicy, Cache and Idempotency interfaces, and
// the ResponseStore behind stored responses with its limits and
// in-memory default. The Engine runs a request through the stages and
// the router (Execute, Embed, CountTokens, and Do, the one path of every
// other modality: rerank, moderation …): the transport (route/api)
// describes the client's HTTP request in an Origin and encodes the
// engine's Answer, or its error, in the client's dialect. Stages
// (route/limits, route/usage, route/cache, route/resilience,
// route/conversations) implement the interfaces and import this package,
// never the HTTP transport (route/api) or a client format
// (route/formats/*); this package imports no transport (net/http,
// platform/httpx, route/api) and no format either.
package pipeline

import (
	"context"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// Call describes a routed request to the gates before it runs.
type Call struct {
	KeyID       string // the gateway key's id; "" when the request carried none
	Endpoint    string // the request path
	Model       string // as the client named it
	Stream      bool
	Session     string // the sticky-session id, if any
	InputTokens int    // estimated from the request
	MaxTokens   int    // the request's output cap, 0 when unset
	// Choices is how many answers the request asks the upstream for
	// (OpenAI's n): each may write MaxTokens. 1 when unset.
	Choices int
	// Unpriced names what the request asks for that an upstream bills
	// beyond its tokens, at prices the gateway does not know — a
	// priority service tier, tools the provider runs, billed beta
	// features —, "" when nothing. A gate enforcing budgets refuses it.
	// Choices and Unpriced are read through Billing, which works them
	// out from the request only when a gate needs them.
	Unpriced string
	Request  *llm.Request
	Start    time.Time

	billing func() (choices int, unpriced string) // fills Choices and Unpriced on first use (SetBilling)

	// Reserved is the cost in USD a gate reserved for the call before it
	// ran (the most it may cost), set by that gate in Admit; 0 when none.
	Reserved float64

	// Count marks a token count (count_tokens, :countTokens): the
	// request reaches an upstream at most to be counted, so there are no
	// tokens or cost to reserve or settle.
	Count bool

	// Modality names the operation of a call of Engine.Do (rerank,
	// moderation …); "" for chat, embeddings and token counts.
	Modality llm.Modality
	// Units is what an operation asks for in the units its price may be
	// given in (documents and the search units they make …), the first
	// being the one its usage record counts; nil for chat. Budgets
	// reserve their price (Pricer.UnitCost) beside InputTokens'.
	Units []llm.Quantity
}

// Billing returns Choices and Unpriced, working them out from the
// request the first time (only gates enforcing budgets need them).
func (c *Call) Billing() (choices int, unpriced string) {
	if c.billing != nil {
		c.Choices, c.Unpriced = c.billing()
		c.billing = nil
	}
	return max(c.Choices, 1), c.Unpriced
}

// SetBilling makes Billing work Choices and Unpriced out with f, the
// first time a gate asks for them.
func (c *Call) SetBilling(f func() (choices int, unpriced string)) {
	c.billing = f
}

// Outcome is how a call ended, given to the gates that admitted it.
type Outcome struct {
	// Status is the HTTP status the client received: 200, or the status
	// its dialect answered the error with (502 for a
	// failure without an upstream status, such as a refused connection);
	// 499 when the client went away; 502 for a stream that failed after
	// its first byte, whose client had 200 and then the error in-stream
	// (Err.Type is then ErrStreamFailed).
	Status int
	Err    *llm.Error // nil on success
	// Target and Connection are what answered; on a failure those of the
	// last attempt (of the attempt cut short when CutShort), empty when
	// none was made.
	Target     router.Target
	Connection string
	Attempts   []router.Attempt
	Usage      llm.Usage
	TTFT       time.Duration // until the first byte of the answer
	Latency    time.Duration // until the answer was complete
	Cache      string        // "HIT", "MISS" or "" (not cacheable)
	Idempotent bool          // replayed from an earlier identical request
	// CutShort marks a call that ended early once the upstream was
	// working on it: a stream cut after its first event (the client left,
	// the upstream failed mid-stream), or a call whose request reached
	// the upstream and then timed out, broke or was left by the client
	// (router.Attempt.Cut; Target is then that attempt's). Usage is then
	// what was delivered (the upstream's figures, estimated where it gave
	// none) and the call is charged that or its reservation, whichever is
	// more. A call none of whose attempts was sent is not charged.
	CutShort bool
	Reserved float64 // Call.Reserved
	// Units is what an operation (Call.Modality) used, in the units of
	// Call.Units: the request's amounts, replaced by the upstream's own
	// figures where it gave them. nil for chat.
	Units []llm.Quantity
}

// ErrStreamFailed is the error type of the outcome of a stream that
// failed after its first byte (Status 502). Its client received 200 and
// then the failure in-stream, in its dialect's shape and with the
// upstream's own type, which the outcome's message begins with.
const ErrStreamFailed llm.ErrorType = "stream_error"

// Gate admits calls and learns how they ended (key policies, rate limits,
// budgets, usage accounting). Admit may return a derived context (for
// example one restricting the providers the router may use, see
// router.WithFilter); a refusal is an *llm.Error (429 with RetryAfter,
// 403 …) and stops the call. done is called exactly once, after the
// answer is complete, and must not block.
type Gate interface {
	Admit(ctx context.Context, c *Call) (_ context.Context, done func(Outcome), err error)
}

// ModelPolicy is implemented by a gate that restricts the models a key
// may use (route/limits). The metadata endpoints (Ollama's /api/show,
// /api/ps) ask it without running a call: nothing is counted or recorded.
type ModelPolicy interface {
	// Permits returns the gate's refusal (*llm.Error 403) when the key
	// may not use model, nil when it may or the gate has no say.
	Permits(ctx context.Context, keyID, model string) error
}

// Cache holds complete answers to repeatable requests, by a key that
// already includes the caller's gateway key.
type Cache interface {
	Get(ctx context.Context, key string) (*llm.Response, bool)
	Put(ctx context.Context, key string, resp *llm.Response)
}

// Idempotency replays and coalesces requests that carry the same
// Idempotency-Key (or X-Request-Id). Begin either returns the answer of an
// earlier request with the key (waiting for it when it is still running),
// or makes the caller the one that runs it: then replay is nil and commit
// must be called with the answer (nil when the request failed, which lets
// the next caller run it instead).
type Idempotency interface {
	Begin(ctx context.Context, key string) (replay *llm.Response, commit func(*llm.Response), err error)
}

// Rewriter changes what a chat request asks for before any stage sees
// it (a gateway-wide system prompt, the thinking budget): before the
// idempotency and cache keys are worked out, the gates and the router.
// It runs for every chat request and token count of every dialect.
type Rewriter interface {
	// Rewrite returns req, or a changed copy of it, for the request of
	// the gateway key keyID ("" when it carried none). It must not change
	// req itself nor anything req points to (the transport keeps using
	// them), and must not block.
	Rewrite(ctx context.Context, keyID string, req *llm.Request) *llm.Request
}

// Stages holds the pipeline's optional stages; the zero value routes
// directly.
type Stages struct {
	// Rewriters run first, in order.
	Rewriters   []Rewriter
	Gates       []Gate
	Cache       Cache
	Idempotency Idempotency
}
