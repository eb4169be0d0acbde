package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/router"
)

// Engine runs every routed request (all five dialects) through the
// stages and the router:
//
//	rewriters → idempotency → gates (limits, budgets, accounting) → cache → router
//
// Every stage is optional. The transport decodes the client's request,
// describes it in an Origin, and encodes what the engine returns (or its
// error) in the client's dialect. An Engine is safe for concurrent use;
// its fields are set before the first call and not changed after.
type Engine struct {
	Router *router.Router
	Stages Stages
	Clock  clock.Clock
	Log    *slog.Logger // failed calls are logged at warning level
	// ClientStatus is the HTTP status the client of ctx receives for e:
	// the one its dialect's error encoder, which writes the answer, picks
	// (e's status, 502 for a failure without one, 529 for an overloaded
	// upstream to Anthropic clients …). Outcomes carry it, so usage
	// records and metrics show what the client saw. nil: e's status, 502
	// when it has none.
	ClientStatus func(ctx context.Context, e *llm.Error) int
	// RequestID names the request of ctx in log lines; nil: none.
	RequestID func(ctx context.Context) string
}

// Origin is what the engine needs to know of a client's request beyond
// its canonical form; the transport reads it from the HTTP request. The
// client's dialect is the mark on the request's context
// (llm.WithDialect).
type Origin struct {
	KeyID    string      // the gateway key's id; "" when the request carried none
	Endpoint string      // the request path
	Session  string      // the sticky-session id, if any
	Cache    CacheChoice // what the client asked of the cache
	// IdempotencyKey is the client's own key for the request
	// (Idempotency-Key or X-Request-Id), "" when it sent none.
	IdempotencyKey string
	// Betas are the anthropic-beta header values (comma-separated flags)
	// of a client that spoke Anthropic Messages, which are sent upstream
	// and may be billed beyond tokens.
	Betas []string
}

// CacheChoice is what a client asked of the response cache.
type CacheChoice uint8

const (
	// CacheDefault caches deterministic requests (temperature 0).
	CacheDefault CacheChoice = iota
	// CacheWanted caches the request whatever its sampling
	// (X-OmniRoute-Cache: true).
	CacheWanted
	// CacheBypass neither looks the request up nor stores its answer
	// (X-OmniRoute-No-Cache: true); it wins over CacheWanted.
	CacheBypass
)

// Answer is what Execute returns: a response or a stream, and how it was
// obtained, which the transport tells the client (the X-OmniRoute-*
// response headers). Cache is set on a failed call too.
type Answer struct {
	Response *llm.Response // nil when Stream is set
	Stream   llm.Stream
	// Cache is "HIT" or "MISS" for a cacheable request, "" otherwise.
	Cache string
	// Idempotent marks an answer replayed from an earlier identical
	// request.
	Idempotent bool
	// Model names the target that answered as "provider/model"; "" for
	// an answer from the cache or a replay.
	Model string
}

// StatusOK is the status of an Outcome whose client received its answer.
const StatusOK = 200

// StatusClientClosed is the status of an Outcome whose client went away.
const StatusClientClosed = 499

// statusBadGateway is the status of a stream that failed after its first
// byte.
const statusBadGateway = 502

// clientClosed is the error of a call whose client went away.
func clientClosed() *llm.Error {
	return &llm.Error{Status: StatusClientClosed, Type: llm.ErrInvalidRequest, Message: "client closed the request"}
}

// cacheable reports whether an answer may be cached: deterministic
// sampling (temperature 0), or the client asked for it; never when the
// client refused the cache.
func cacheable(o *Origin, req *llm.Request) bool {
	switch o.Cache {
	case CacheBypass:
		return false
	case CacheWanted:
		return true
	}
	return req.Temperature != nil && *req.Temperature == 0
}

// cacheKey hashes what determines an answer: the gateway key, the model,
// the conversation, tools and the generation parameters. The stream flag,
// usage options, the end-user tag and metadata are left out, so a
// streamed and a plain request share an entry.
func cacheKey(keyID string, req *llm.Request) string {
	n := *req
	n.Stream, n.IncludeUsage, n.User, n.Metadata = false, false, "", nil
	b, err := json.Marshal(&n) // maps marshal with sorted keys
	if err != nil {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencyKey is the client's idempotency key scoped to its gateway
// key and endpoint and bound to the request (the normalised body, as in
// cacheKey): a key reused with another request names another request
// instead of replaying an unrelated answer. "" when the client sent none
// (or one longer than 256 bytes).
func idempotencyKey(o *Origin, req *llm.Request) string {
	k := o.IdempotencyKey
	if k == "" || len(k) > 256 {
		return ""
	}
	sum := sha256.Sum256([]byte(o.KeyID + "\x00" + o.Endpoint + "\x00" + k + "\x00" + cacheKey("", req)))
	return hex.EncodeToString(sum[:])
}

// storable reports whether an answer may be cached: a complete answer
// (including one cut at max_tokens, which is part of the key), not an
// error, a content-filter stop or a paused turn, which a retry may
// answer differently, and not an empty one.
func storable(resp *llm.Response) bool {
	switch resp.StopReason {
	case llm.StopError, llm.StopContentFilter, llm.StopPauseTurn:
		return false
	}
	return len(resp.Content) > 0
}

// Execute runs req through the pipeline and the router and returns
// either a response or a stream (with usage estimated when the upstream
// reports none). A stream must be read to its end or closed: its outcome
// reaches the gates then.
func (e *Engine) Execute(ctx context.Context, o *Origin, req *llm.Request) (Answer, error) {
	req = e.rewrite(ctx, o.KeyID, req)
	// Idempotency: a replay skips everything else.
	var commit func(*llm.Response)
	if e.Stages.Idempotency != nil {
		if k := idempotencyKey(o, req); k != "" {
			replay, c, err := e.Stages.Idempotency.Begin(ctx, k)
			if err != nil {
				return Answer{}, err
			}
			if replay != nil {
				a := answer(req, replay)
				a.Idempotent = true
				return a, nil
			}
			commit = c
		}
	}
	a, err := e.admitted(ctx, o, req, commit)
	if err != nil && commit != nil {
		commit(nil)
	}
	return a, err
}

// admitted runs the gates, the cache and the router.
func (e *Engine) admitted(ctx context.Context, o *Origin, req *llm.Request, commit func(*llm.Response)) (Answer, error) {
	p := e.Stages
	call := &Call{KeyID: o.KeyID, Endpoint: o.Endpoint, Model: req.Model, Stream: req.Stream, Session: o.Session,
		InputTokens: llm.EstimateInput(req), Request: req, Start: e.Clock.Now(), Choices: 1}
	if req.MaxTokens != nil {
		call.MaxTokens = *req.MaxTokens
	}
	if native := llm.DialectOf(ctx) == llm.DialectAnthropic; len(req.Extra) > 0 || native {
		betas := o.Betas
		call.SetBilling(func() (int, string) { return billing(req, betas, native) })
	}
	ctx, finish, err := e.admit(ctx, call)
	if err != nil {
		return Answer{}, err
	}

	var ckey string
	var ans Answer
	if p.Cache != nil && cacheable(o, req) {
		if ckey = cacheKey(o.KeyID, req); ckey != "" {
			if hit, ok := p.Cache.Get(ctx, ckey); ok {
				el := e.Clock.Now().Sub(call.Start)
				finish(Outcome{Status: StatusOK, Usage: llm.Usage{}, TTFT: el, Latency: el, Cache: "HIT"})
				if commit != nil {
					commit(hit)
				}
				ans = answer(req, hit)
				ans.Cache = "HIT"
				return ans, nil
			}
			ans.Cache = "MISS"
		}
	}

	res, err := e.route(ctx, req)
	if err != nil {
		out := e.failed(ctx, err, call.Start)
		out.Cache, out.Reserved = ans.Cache, call.Reserved
		if a, ok := lastCut(out.Attempts); ok {
			// An attempt reached the upstream and ended without its
			// answer (timed out, cut, or the client left): the upstream
			// may bill it all the same. Attempts never sent (vetoed by
			// the health tracker, dial refused, queued) cost nothing.
			out.CutShort = true
			out.Target, out.Connection = router.Target{Provider: a.Provider, Model: a.Model}, a.Connection
			out.Usage = llm.Usage{InputTokens: call.InputTokens, Estimated: true}
		}
		finish(out)
		e.logFailed(ctx, err, call.Model, &out)
		return ans, err
	}
	out := Outcome{Status: StatusOK, Target: res.Target, Attempts: res.Attempts, Cache: ans.Cache, Reserved: call.Reserved}
	ans.Model = targetName(req.Model, res.Target) // the reply's model is the name asked for (router.Result)
	if n := len(res.Attempts); n > 0 {
		out.Connection = res.Attempts[n-1].Connection
	}
	keep := func(resp *llm.Response) {
		if ckey != "" && storable(resp) {
			p.Cache.Put(ctx, ckey, resp)
		}
		if commit != nil {
			commit(resp)
		}
	}
	if res.Stream == nil {
		llm.FillUsage(req, res.Response)
		if res.Response.Created.IsZero() {
			res.Response.Created = e.Clock.Now()
		}
		out.Usage = res.Response.Usage
		out.Latency = e.Clock.Now().Sub(call.Start)
		out.TTFT = out.Latency
		finish(out)
		keep(res.Response)
		ans.Response = res.Response
		return ans, nil
	}
	out.TTFT = e.Clock.Now().Sub(call.Start)
	ans.Stream = &observed{Stream: llm.EstimatingStream(req, res.Stream), acc: llm.NewAccumulator(),
		keep: ckey != "" || commit != nil, start: call.Start, now: e.Clock.Now, out: out, ctx: ctx, input: call.InputTokens,
		finish: func(o Outcome, resp *llm.Response) {
			finish(o)
			if o.Err != nil && o.Status != StatusClientClosed {
				e.logFailure(ctx, "upstream stream failed after its first byte", call.Model, &o)
			}
			if resp != nil {
				keep(resp)
			} else if commit != nil {
				commit(nil)
			}
		}}
	return ans, nil
}

// targetName is t as "provider/model": the request's own model name when
// it names t already (no new string on the common direct path).
func targetName(asked string, t router.Target) string {
	if p, m, ok := router.SplitModel(asked); ok && p == t.Provider && m == t.Model {
		return asked
	}
	return t.String()
}

// lastCut returns the last attempt that was cut after reaching the
// upstream (router.Attempt.Cut).
func lastCut(attempts []router.Attempt) (router.Attempt, bool) {
	for i := len(attempts) - 1; i >= 0; i-- {
		if attempts[i].Cut {
			return attempts[i], true
		}
	}
	return router.Attempt{}, false
}

// admit runs call through the gates. finish tells every gate that
// admitted it how the call ended (in reverse order); on a refusal the
// gates that had admitted it are told already.
func (e *Engine) admit(ctx context.Context, call *Call) (context.Context, func(Outcome), error) {
	gates := e.Stages.Gates
	dones := make([]func(Outcome), 0, len(gates))
	finish := func(o Outcome) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](o)
		}
	}
	for _, g := range gates {
		c2, done, err := g.Admit(ctx, call)
		if err != nil {
			finish(e.failed(ctx, err, call.Start))
			return ctx, nil, err
		}
		if c2 != nil {
			ctx = c2
		}
		if done != nil {
			dones = append(dones, done)
		}
	}
	return ctx, finish, nil
}

// Embed runs an embedding request (every dialect's) through the gates —
// key policy, limits, budgets, usage — and the router. Embeddings are
// neither cached nor replayed. Usage the upstream did not report is
// estimated from the inputs.
func (e *Engine) Embed(ctx context.Context, o *Origin, model string, inputs []string, dims int) (*router.EmbedResult, error) {
	call := &Call{KeyID: o.KeyID, Endpoint: o.Endpoint, Model: model, Session: o.Session, Start: e.Clock.Now()}
	for _, in := range inputs {
		call.InputTokens += llm.EstimateTokens(in)
	}
	ctx, finish, err := e.admit(ctx, call)
	if err != nil {
		return nil, err
	}
	res, err := e.Router.Embed(ctx, model, inputs, dims)
	if err != nil {
		out := e.failed(ctx, err, call.Start)
		finish(out)
		e.logFailed(ctx, err, model, &out)
		return nil, err
	}
	if res.Usage.InputTokens == 0 {
		res.Usage.InputTokens, res.Usage.Estimated = call.InputTokens, true
	}
	el := e.Clock.Now().Sub(call.Start)
	out := Outcome{Status: StatusOK, Target: res.Target, Attempts: res.Attempts, Usage: res.Usage, TTFT: el, Latency: el}
	if n := len(res.Attempts); n > 0 {
		out.Connection = res.Attempts[n-1].Connection
	}
	finish(out)
	return res, nil
}

// CountTokens counts req's input tokens (Anthropic's count_tokens,
// Gemini's :countTokens): through the gates as a Call marked Count (key
// policy and request-rate limits apply; no tokens or spend are reserved
// or charged), then the router, which asks the target's upstream when
// its adapter counts and estimates otherwise (res.Estimated).
func (e *Engine) CountTokens(ctx context.Context, o *Origin, req *llm.Request) (*router.CountResult, error) {
	req = e.rewrite(ctx, o.KeyID, req)
	call := &Call{KeyID: o.KeyID, Endpoint: o.Endpoint, Model: req.Model, Session: o.Session, Request: req,
		Start: e.Clock.Now(), Choices: 1, Count: true}
	ctx, finish, err := e.admit(ctx, call)
	if err != nil {
		return nil, err
	}
	res, err := e.Router.CountTokens(ctx, req)
	if err != nil {
		finish(e.failed(ctx, err, call.Start))
		return nil, err
	}
	el := e.Clock.Now().Sub(call.Start)
	out := Outcome{Status: StatusOK, Target: res.Target, Attempts: res.Attempts, TTFT: el, Latency: el}
	if n := len(res.Attempts); n > 0 {
		out.Connection = res.Attempts[n-1].Connection
	}
	finish(out)
	return res, nil
}

// Permits asks the gates that hold key policies (ModelPolicy) whether
// the key keyID may use model, without running a call.
func (e *Engine) Permits(ctx context.Context, keyID, model string) error {
	for _, g := range e.Stages.Gates {
		if p, ok := g.(ModelPolicy); ok {
			if err := p.Permits(ctx, keyID, model); err != nil {
				return err
			}
		}
	}
	return nil
}

// rewrite runs req through the rewriters (Stages.Rewriters).
func (e *Engine) rewrite(ctx context.Context, keyID string, req *llm.Request) *llm.Request {
	for _, rw := range e.Stages.Rewriters {
		if r := rw.Rewrite(ctx, keyID, req); r != nil {
			req = r
		}
	}
	return req
}

// answer returns a stored response the way the client asked for it.
func answer(req *llm.Request, resp *llm.Response) Answer {
	if req.Stream {
		return Answer{Stream: &llm.SliceStream{Events: llm.Events(resp)}}
	}
	c := *resp
	return Answer{Response: &c}
}

// route sends req through the router.
func (e *Engine) route(ctx context.Context, req *llm.Request) (*router.Result, error) {
	if req.Stream {
		return e.Router.Stream(ctx, req)
	}
	return e.Router.Chat(ctx, req)
}

// failed is the outcome of a call that ended with err before its answer
// began (a gate's refusal, or the router's failure): the status the
// client receives for err, or 499 when it went away; the attempts the
// router made and the target and connection of the last of them.
func (e *Engine) failed(ctx context.Context, err error, start time.Time) Outcome {
	var le *llm.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		le = clientClosed()
	case !errors.As(err, &le):
		le = &llm.Error{Status: 500, Type: llm.ErrServer, Message: err.Error()}
	}
	el := e.Clock.Now().Sub(start)
	o := Outcome{Status: le.Status, Err: le, Latency: el, TTFT: el, Attempts: router.AttemptsOf(err)}
	if o.Status != StatusClientClosed {
		o.Status = e.clientStatus(ctx, le)
	}
	if n := len(o.Attempts); n > 0 {
		a := o.Attempts[n-1]
		o.Target, o.Connection = router.Target{Provider: a.Provider, Model: a.Model}, a.Connection
	}
	return o
}

// clientStatus is the HTTP status the client of ctx receives for le
// (Engine.ClientStatus).
func (e *Engine) clientStatus(ctx context.Context, le *llm.Error) int {
	if e.ClientStatus != nil {
		return e.ClientStatus(ctx, le)
	}
	if le.Status == 0 {
		return statusBadGateway
	}
	return le.Status
}

// dialectName names the client format of a request, from the mark its
// handler put on the context; requests without one (embeddings) are
// OpenAI's.
func dialectName(ctx context.Context) string {
	if d := llm.DialectOf(ctx); d != "" {
		return string(d)
	}
	return string(llm.DialectOpenAI)
}

// logFailed logs a call the router failed (every attempt failed, or the
// first one failed with an error no other target can fix), unless its
// client went away.
func (e *Engine) logFailed(ctx context.Context, err error, model string, o *Outcome) {
	var ex *router.ExhaustedError
	if o.Status != StatusClientClosed && errors.As(err, &ex) {
		e.logFailure(ctx, "all upstream attempts failed", model, o)
	}
}

// logFailure logs a failed call at warning level, with the same fields
// whether it failed before its answer began or as a stream after its
// first byte.
func (e *Engine) logFailure(ctx context.Context, msg, model string, o *Outcome) {
	var errText, requestID string
	if o.Err != nil {
		errText = o.Err.Error()
	}
	if e.RequestID != nil {
		requestID = e.RequestID(ctx)
	}
	e.Log.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("request_id", requestID), slog.String("dialect", dialectName(ctx)),
		slog.String("model", model), slog.String("provider", o.Target.Provider), slog.String("connection", o.Connection),
		slog.String("target_model", o.Target.Model), slog.Int("status", o.Status), slog.Any("attempts", o.Attempts),
		slog.String("error", errText))
}
