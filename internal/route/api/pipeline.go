package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// Every routed chat request (all five dialects) passes through the same
// pipeline in execute:
//
//	idempotency → gates (limits, budgets, accounting) → cache → router
//
// Each stage is an interface owned by route/pipeline and implemented
// elsewhere (route/limits, route/cache, route/usage …); all are optional.

// Response headers of the pipeline.
const (
	HeaderCache      = "X-OmniRoute-Cache"      // HIT or MISS on cacheable requests
	HeaderNoCache    = "X-OmniRoute-No-Cache"   // request: "true" bypasses the cache
	HeaderIdempotent = "X-OmniRoute-Idempotent" // "true" on a replayed answer
	HeaderModel      = "X-OmniRoute-Model"      // provider/model of the target that answered
)

type keyIDKey struct{}

// withKeyID records the caller's gateway key id.
func withKeyID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyIDKey{}, id)
}

// KeyIDFrom returns the gateway key id of the request, "" when none.
func KeyIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(keyIDKey{}).(string)
	return id
}

// cacheable reports whether an answer may be cached: deterministic
// sampling (temperature 0), or the client asked for it with
// X-OmniRoute-Cache: true; never with X-OmniRoute-No-Cache: true.
func cacheable(r *http.Request, req *llm.Request) bool {
	if strings.EqualFold(headerValue(r.Header, canonicalNoCache), "true") {
		return false
	}
	if strings.EqualFold(headerValue(r.Header, canonicalCache), "true") {
		return true
	}
	return req.Temperature != nil && *req.Temperature == 0
}

// The pipeline's request headers in canonical form: Header.Get would
// canonicalise (and allocate) the mixed-case names on every request.
var (
	canonicalCache   = http.CanonicalHeaderKey(HeaderCache)
	canonicalNoCache = http.CanonicalHeaderKey(HeaderNoCache)
	canonicalModel   = http.CanonicalHeaderKey(HeaderModel)
)

// headerValue is h.Get(key) for a key already in canonical form.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
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

// idempotencyKey is the client's Idempotency-Key (or X-Request-Id),
// scoped to its gateway key and endpoint and bound to the request (the
// normalised body, as in cacheKey): a key reused with another request
// names another request instead of replaying an unrelated answer. "" when
// the client sent none.
func idempotencyKey(r *http.Request, keyID string, req *llm.Request) string {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		k = r.Header.Get("X-Request-Id")
	}
	if k == "" || len(k) > 256 {
		return ""
	}
	sum := sha256.Sum256([]byte(keyID + "\x00" + r.URL.Path + "\x00" + k + "\x00" + cacheKey("", req)))
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

// execute runs req through the pipeline and the router and returns either
// a response or a stream (with usage estimated when the upstream reports
// none). Headers that describe how the answer was obtained are set on w.
func (s *Server) execute(ctx context.Context, w http.ResponseWriter, r *http.Request, req *llm.Request) (*llm.Response, llm.Stream, error) {
	p := s.pipeline
	keyID := KeyIDFrom(ctx)

	// Idempotency: a replay skips everything else.
	var commit func(*llm.Response)
	if p.Idempotency != nil {
		if k := idempotencyKey(r, keyID, req); k != "" {
			replay, c, err := p.Idempotency.Begin(ctx, k)
			if err != nil {
				return nil, nil, err
			}
			if replay != nil {
				w.Header().Set(HeaderIdempotent, "true")
				return s.answer(req, replay)
			}
			commit = c
		}
	}
	resp, stream, err := s.admitted(ctx, w, r, req, keyID, commit)
	if err != nil && commit != nil {
		commit(nil)
	}
	return resp, stream, err
}

// admitted runs the gates, the cache and the router.
func (s *Server) admitted(ctx context.Context, w http.ResponseWriter, r *http.Request, req *llm.Request, keyID string,
	commit func(*llm.Response)) (*llm.Response, llm.Stream, error) {
	p := s.pipeline
	call := &pipeline.Call{KeyID: keyID, Endpoint: r.URL.Path, Model: req.Model, Stream: req.Stream, Session: sessionID(r),
		InputTokens: llm.EstimateInput(req), Request: req, Start: s.clock.Now(), Choices: 1}
	if req.MaxTokens != nil {
		call.MaxTokens = *req.MaxTokens
	}
	if native := llm.DialectOf(ctx) == llm.DialectAnthropic; len(req.Extra) > 0 || native {
		call.SetBilling(func() (int, string) { return billing(r, req, native) })
	}
	ctx, finish, err := s.admit(ctx, call)
	if err != nil {
		return nil, nil, err
	}

	var ckey, cacheState string
	if p.Cache != nil && cacheable(r, req) {
		if ckey = cacheKey(keyID, req); ckey != "" {
			if hit, ok := p.Cache.Get(ctx, ckey); ok {
				w.Header().Set(HeaderCache, "HIT")
				el := s.clock.Now().Sub(call.Start)
				finish(pipeline.Outcome{Status: http.StatusOK, Usage: llm.Usage{}, TTFT: el, Latency: el, Cache: "HIT"})
				if commit != nil {
					commit(hit)
				}
				return s.answer(req, hit)
			}
			cacheState = "MISS"
			w.Header().Set(HeaderCache, "MISS")
		}
	}

	res, err := s.route(ctx, req)
	if err != nil {
		o := s.failed(ctx, err, call.Start)
		o.Cache, o.Reserved = cacheState, call.Reserved
		if a, ok := lastCut(o.Attempts); ok {
			// An attempt reached the upstream and ended without its
			// answer (timed out, cut, or the client left): the upstream
			// may bill it all the same. Attempts never sent (vetoed by
			// the health tracker, dial refused, queued) cost nothing.
			o.CutShort = true
			o.Target, o.Connection = router.Target{Provider: a.Provider, Model: a.Model}, a.Connection
			o.Usage = llm.Usage{InputTokens: call.InputTokens, Estimated: true}
		}
		finish(o)
		s.logFailed(ctx, err, call.Model, &o)
		return nil, nil, err
	}
	o := pipeline.Outcome{Status: http.StatusOK, Target: res.Target, Attempts: res.Attempts, Cache: cacheState, Reserved: call.Reserved}
	w.Header()[canonicalModel] = []string{targetName(req.Model, res.Target)} // the reply's model is the name asked for (router.Result)
	if n := len(res.Attempts); n > 0 {
		o.Connection = res.Attempts[n-1].Connection
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
			res.Response.Created = s.clock.Now()
		}
		o.Usage = res.Response.Usage
		o.Latency = s.clock.Now().Sub(call.Start)
		o.TTFT = o.Latency
		finish(o)
		keep(res.Response)
		return res.Response, nil, nil
	}
	o.TTFT = s.clock.Now().Sub(call.Start)
	return nil, &observed{Stream: llm.EstimatingStream(req, res.Stream), acc: llm.NewAccumulator(),
		keep: ckey != "" || commit != nil, start: call.Start, now: s.clock.Now, out: o, ctx: ctx, input: call.InputTokens,
		finish: func(o pipeline.Outcome, resp *llm.Response) {
			finish(o)
			if o.Err != nil && o.Status != statusClientClosed {
				s.logFailure(ctx, "upstream stream failed after its first byte", call.Model, &o)
			}
			if resp != nil {
				keep(resp)
			} else if commit != nil {
				commit(nil)
			}
		}}, nil
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
func (s *Server) admit(ctx context.Context, call *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	gates := s.pipeline.Gates
	dones := make([]func(pipeline.Outcome), 0, len(gates))
	finish := func(o pipeline.Outcome) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](o)
		}
	}
	for _, g := range gates {
		c2, done, err := g.Admit(ctx, call)
		if err != nil {
			finish(s.failed(ctx, err, call.Start))
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

// embed runs an embedding request (every dialect's) through the gates —
// key policy, limits, budgets, usage — and the router. Embeddings are
// neither cached nor replayed. Usage the upstream did not report is
// estimated from the inputs.
func (s *Server) embed(ctx context.Context, r *http.Request, model string, inputs []string, dims int) (*router.EmbedResult, error) {
	call := &pipeline.Call{KeyID: KeyIDFrom(ctx), Endpoint: r.URL.Path, Model: model, Session: sessionID(r), Start: s.clock.Now()}
	for _, in := range inputs {
		call.InputTokens += llm.EstimateTokens(in)
	}
	ctx, finish, err := s.admit(ctx, call)
	if err != nil {
		return nil, err
	}
	res, err := s.router.Embed(ctx, model, inputs, dims)
	if err != nil {
		o := s.failed(ctx, err, call.Start)
		finish(o)
		s.logFailed(ctx, err, model, &o)
		return nil, err
	}
	if res.Usage.InputTokens == 0 {
		res.Usage.InputTokens, res.Usage.Estimated = call.InputTokens, true
	}
	el := s.clock.Now().Sub(call.Start)
	o := pipeline.Outcome{Status: http.StatusOK, Target: res.Target, Attempts: res.Attempts, Usage: res.Usage, TTFT: el, Latency: el}
	if n := len(res.Attempts); n > 0 {
		o.Connection = res.Attempts[n-1].Connection
	}
	finish(o)
	return res, nil
}

// answer returns a stored response the way the client asked for it.
func (s *Server) answer(req *llm.Request, resp *llm.Response) (*llm.Response, llm.Stream, error) {
	if req.Stream {
		return nil, &llm.SliceStream{Events: llm.Events(resp)}, nil
	}
	c := *resp
	return &c, nil, nil
}

// route sends req through the router.
func (s *Server) route(ctx context.Context, req *llm.Request) (*router.Result, error) {
	if req.Stream {
		return s.router.Stream(ctx, req)
	}
	return s.router.Chat(ctx, req)
}

// statusClientClosed is the status of a call whose client went away.
const statusClientClosed = 499

// clientClosed is the error of a call whose client went away.
func clientClosed() *llm.Error {
	return &llm.Error{Status: statusClientClosed, Type: llm.ErrInvalidRequest, Message: "client closed the request"}
}

// failed is the outcome of a call that ended with err before its answer
// began (a gate's refusal, or the router's failure): the status the
// client receives for err, or 499 when it went away; the attempts the
// router made and the target and connection of the last of them.
func (s *Server) failed(ctx context.Context, err error, start time.Time) pipeline.Outcome {
	var le *llm.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		le = clientClosed()
	case !errors.As(err, &le):
		le = &llm.Error{Status: http.StatusInternalServerError, Type: llm.ErrServer, Message: err.Error()}
	}
	el := s.clock.Now().Sub(start)
	o := pipeline.Outcome{Status: le.Status, Err: le, Latency: el, TTFT: el, Attempts: router.AttemptsOf(err)}
	if o.Status != statusClientClosed {
		o.Status = clientStatus(ctx, le)
	}
	if n := len(o.Attempts); n > 0 {
		a := o.Attempts[n-1]
		o.Target, o.Connection = router.Target{Provider: a.Provider, Model: a.Model}, a.Connection
	}
	return o
}

// dialectOf names the client format of a request, from the mark its
// handler put on the context (llm.WithDialect, through X.WithNative), and
// returns the function that renders its errors (what writeError sends).
func dialectOf(ctx context.Context) (name string, encodeError func(*llm.Error) (int, []byte)) {
	switch d := llm.DialectOf(ctx); d {
	case llm.DialectAnthropic:
		return string(d), anthropic.EncodeError
	case llm.DialectGemini:
		return string(d), gemini.EncodeError
	case llm.DialectOllama:
		return string(d), ollama.EncodeError
	case llm.DialectResponses:
		return string(d), responses.EncodeError
	}
	return string(llm.DialectOpenAI), openai.EncodeError // also embeddings, whose handlers mark no dialect
}

// clientStatus is the HTTP status the client of ctx receives for e: the
// one its dialect's error encoder, which writes the answer, picks — e's
// status, 502 for a failure without one (the upstream could not be
// reached or its answer not read), 529 for an overloaded upstream to
// Anthropic clients, 503 for a 529 to Gemini clients. Outcomes carry it,
// so usage records and metrics show what the client saw.
func clientStatus(ctx context.Context, e *llm.Error) int {
	_, encode := dialectOf(ctx)
	status, _ := encode(e)
	return status
}

// logFailed logs a call the router failed (every attempt failed, or the
// first one failed with an error no other target can fix), unless its
// client went away.
func (s *Server) logFailed(ctx context.Context, err error, model string, o *pipeline.Outcome) {
	var ex *router.ExhaustedError
	if o.Status != statusClientClosed && errors.As(err, &ex) {
		s.logFailure(ctx, "all upstream attempts failed", model, o)
	}
}

// logFailure logs a failed call at warning level, with the same fields
// whether it failed before its answer began or as a stream after its
// first byte.
func (s *Server) logFailure(ctx context.Context, msg, model string, o *pipeline.Outcome) {
	dialect, _ := dialectOf(ctx)
	var errText string
	if o.Err != nil {
		errText = o.Err.Error()
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("request_id", httpx.RequestID(ctx)), slog.String("dialect", dialect),
		slog.String("model", model), slog.String("provider", o.Target.Provider), slog.String("connection", o.Connection),
		slog.String("target_model", o.Target.Model), slog.Int("status", o.Status), slog.Any("attempts", o.Attempts),
		slog.String("error", errText))
}

// streamFailure is the error of a stream that failed after its first
// byte, as its outcome records it.
func streamFailure(err error) *llm.Error {
	e := &llm.Error{Status: http.StatusBadGateway, Type: pipeline.ErrStreamFailed, Message: err.Error()}
	var le *llm.Error
	if errors.As(err, &le) {
		e.Provider, e.Message = le.Provider, le.Message
		if le.Type != "" {
			e.Message = string(le.Type) + ": " + le.Message
		}
	}
	return e
}

// errStreamUnfinished ends a stream whose upstream stopped sending before
// its stop event.
var errStreamUnfinished = &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream ended without its stop event"}

// observed watches a stream on its way to the client: it keeps the final
// usage, counts what was delivered, folds the events into a response when
// the answer is to be kept (cache, idempotency), and reports the outcome
// once, when the stream ends or is closed.
type observed struct {
	llm.Stream
	acc    *llm.Accumulator
	keep   bool
	start  time.Time
	now    func() time.Time
	out    pipeline.Outcome
	ctx    context.Context // the request's: done when the client left
	input  int             // the request's estimated input tokens
	finish func(pipeline.Outcome, *llm.Response)

	once   sync.Once
	broken bool // an event did not fold or the stream failed
	ended  bool // a Stop event arrived
	output int  // estimated tokens of the deltas passed on
}

func (o *observed) Next() (llm.Event, error) {
	ev, err := o.Stream.Next()
	switch {
	case errors.Is(err, io.EOF) && !o.ended && o.ctx.Err() == nil:
		o.end(errStreamUnfinished)
	case errors.Is(err, io.EOF):
		o.end(nil)
	case err != nil:
		o.end(err)
	default:
		if ev.Usage != nil {
			o.out.Usage = *ev.Usage
		}
		switch {
		case ev.Type == llm.EventDelta:
			o.output += llm.EstimateTokens(ev.Delta.Text) + llm.EstimateTokens(ev.Delta.Arguments)
		case ev.Type == llm.EventStart && ev.Part != nil: // a part may start with content (whole tool calls)
			o.output += llm.EstimateTokens(ev.Part.Text)
			if tc := ev.Part.ToolCall; tc != nil {
				o.output += llm.EstimateTokens(tc.Name) + (len(tc.Arguments)+3)/4
			}
		}
		if o.keep && !o.broken {
			if o.acc.Add(ev) != nil {
				o.broken = true
			}
		}
		switch ev.Type {
		case llm.EventStop:
			o.ended = true
		case llm.EventError:
			o.end(ev.Err)
		}
	}
	return ev, err
}

func (o *observed) Close() error {
	if !o.ended && o.ctx.Err() != nil {
		o.drain()
	}
	err := o.Stream.Close()
	if !o.ended {
		o.end(context.Canceled)
	} else {
		o.end(nil)
	}
	return err
}

// maxDrain bounds the events drain reads.
const maxDrain = 4096

// drain reads on, once the client has left, what the upstream had
// already sent: a stream whose end was received (the client left while
// its last bytes were being written) completed, and is charged its real
// usage rather than as cut short. The client's leaving cancelled the
// upstream call, so reading returns what had arrived and then fails.
func (o *observed) drain() {
	for range maxDrain {
		ev, err := o.Next()
		if err != nil || o.ended || ev.Type == llm.EventError {
			return
		}
	}
}

// end reports the outcome once: a stream that failed or was cut short
// reports what was delivered and its error — 499 when the client left
// (or stopped reading), else 502 with ErrStreamFailed —; one that stopped
// normally reports success and, when kept, the folded response.
func (o *observed) end(err error) {
	o.once.Do(func() {
		out := o.out
		out.Latency = o.now().Sub(o.start)
		if err != nil || !o.ended {
			if err == nil || o.ctx.Err() != nil || errors.Is(err, context.Canceled) {
				out.Status, out.Err = statusClientClosed, clientClosed() // the client left
			} else {
				out.Status, out.Err = http.StatusBadGateway, streamFailure(err)
			}
			out.CutShort, out.Usage = true, delivered(out.Usage, o.input, o.output)
			o.finish(out, nil)
			return
		}
		var resp *llm.Response
		if o.keep && !o.broken {
			if r, ferr := o.acc.Response(); ferr == nil {
				resp = r
			}
		}
		o.finish(out, resp)
	})
}

// delivered is the usage of a stream cut short: what the upstream
// reported so far, with the input estimated from the request when it
// reported none and the output estimated from the deltas passed on when
// it reported less.
func delivered(u llm.Usage, input, output int) llm.Usage {
	if u.InputTokens == 0 && u.CacheReadTokens == 0 && u.CacheWriteTokens == 0 {
		u.InputTokens, u.Estimated = input, true
	}
	if u.OutputTokens < output {
		u.OutputTokens, u.Estimated = output, true
	}
	return u
}

// Billed extras: service tiers priced at most at the standard price,
// tools the client runs itself, and anthropic-beta features billed at
// premium or per use.
var (
	standardTiers = map[string]bool{"": true, "auto": true, "default": true, "flex": true, "standard_only": true}
	clientTools   = map[string]bool{"function": true, "custom": true, "local_shell": true, "shell": true,
		"apply_patch": true, "computer_use_preview": true}
	billedBetas = []string{"context-1m-", "extended-cache-ttl-", "code-execution-", "web-fetch-", "web-search-", "skills-"}
)

// billing reads what multiplies a request's price: the number of answers
// (n, at most 128) and, when the request asks for anything billed at
// prices the gateway does not know, what that is. anthropicClient: the
// client spoke Anthropic Messages, whose anthropic-beta flags are sent
// upstream.
func billing(r *http.Request, req *llm.Request, anthropicClient bool) (choices int, unpriced string) {
	choices = 1
	if raw, ok := req.Extra["n"]; ok {
		var n int
		if json.Unmarshal(raw, &n) == nil && n > 1 {
			choices = min(n, 128)
		}
	}
	if raw, ok := req.Extra["service_tier"]; ok {
		var tier string
		if json.Unmarshal(raw, &tier) != nil || !standardTiers[tier] {
			return choices, "service_tier " + strconv.Quote(truncated(tier, 32))
		}
	}
	if _, ok := req.Extra["web_search_options"]; ok {
		return choices, "web_search_options (web search)"
	}
	if raw, ok := req.Extra["tools"]; ok { // built-in tools (Responses) or non-function tools (Gemini)
		var tools []map[string]json.RawMessage
		if json.Unmarshal(raw, &tools) != nil {
			return choices, "built-in tools"
		}
		for _, t := range tools {
			if v, ok := t["type"]; ok {
				var typ string
				if json.Unmarshal(v, &typ) != nil || !clientTools[typ] {
					return choices, "the built-in tool " + strconv.Quote(truncated(typ, 64))
				}
				continue
			}
			for k := range t { // Gemini names a tool by its key: googleSearch, codeExecution …
				return choices, "the built-in tool " + strconv.Quote(truncated(k, 64))
			}
		}
	}
	if raw, ok := req.Extra["background"]; ok && string(raw) == "true" {
		return choices, "background mode"
	}
	if raw, ok := req.Extra["modalities"]; ok && strings.Contains(string(raw), "audio") {
		return choices, "audio output"
	}
	if !anthropicClient {
		return choices, ""
	}
	for _, h := range r.Header[canonicalBeta] {
		for flag := range strings.SplitSeq(h, ",") {
			flag = strings.TrimSpace(flag)
			for _, b := range billedBetas {
				if strings.HasPrefix(flag, b) {
					return choices, "anthropic-beta " + truncated(flag, 64)
				}
			}
		}
	}
	return choices, ""
}

var canonicalBeta = http.CanonicalHeaderKey("anthropic-beta")

// truncated cuts s to at most n bytes, for messages.
func truncated(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
