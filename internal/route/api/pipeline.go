package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// Every routed request (all five dialects) passes through the engine of
// route/pipeline:
//
//	idempotency → gates (limits, budgets, accounting) → cache → router
//
// The handlers decode the request, describe the HTTP request to the
// engine (origin), and encode its answer and the headers below, or its
// error, in the client's dialect.

// Headers of the pipeline.
const (
	HeaderCache      = "X-OmniRoute-Cache"      // HIT or MISS on cacheable requests
	HeaderNoCache    = "X-OmniRoute-No-Cache"   // request: "true" bypasses the cache
	HeaderIdempotent = "X-OmniRoute-Idempotent" // "true" on a replayed answer
	HeaderModel      = "X-OmniRoute-Model"      // provider/model of the target that answered
)

// The pipeline's headers in canonical form: Header.Get and Header.Set
// would canonicalise (and allocate) the mixed-case names on every
// request.
var (
	canonicalCache      = http.CanonicalHeaderKey(HeaderCache)
	canonicalNoCache    = http.CanonicalHeaderKey(HeaderNoCache)
	canonicalIdempotent = http.CanonicalHeaderKey(HeaderIdempotent)
	canonicalModel      = http.CanonicalHeaderKey(HeaderModel)
	canonicalBeta       = http.CanonicalHeaderKey("anthropic-beta")
)

// headerValue is h.Get(key) for a key already in canonical form.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

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

// origin describes r, whose context (with the key id) is ctx, to the
// engine: the caller's key, the endpoint and the sticky session.
func origin(ctx context.Context, r *http.Request) pipeline.Origin {
	return pipeline.Origin{KeyID: KeyIDFrom(ctx), Endpoint: r.URL.Path, Session: sessionID(r)}
}

// execute runs req through the engine, with what the client asked of
// the cache (X-OmniRoute-Cache: true caches any request,
// X-OmniRoute-No-Cache: true none), its Idempotency-Key (or X-Request-Id)
// and anthropic-beta flags, and sets the headers that describe how the
// answer was obtained on w — on a failure too, before its error is
// written.
func (s *Server) execute(ctx context.Context, w http.ResponseWriter, r *http.Request, req *llm.Request) (*llm.Response, llm.Stream, error) {
	o := origin(ctx, r)
	switch {
	case strings.EqualFold(headerValue(r.Header, canonicalNoCache), "true"):
		o.Cache = pipeline.CacheBypass
	case strings.EqualFold(headerValue(r.Header, canonicalCache), "true"):
		o.Cache = pipeline.CacheWanted
	}
	if o.IdempotencyKey = r.Header.Get("Idempotency-Key"); o.IdempotencyKey == "" {
		o.IdempotencyKey = r.Header.Get("X-Request-Id")
	}
	o.Betas = r.Header[canonicalBeta]
	if wantsProgress(ctx, r, req) {
		return s.executeWithProgress(ctx, w, r, &o, req)
	}
	a, err := s.engine.Execute(ctx, &o, req)
	s.answerHeaders(w, a)
	return a.Response, a.Stream, err
}

// executeWithProgress is execute for a request with progress events: the
// SSE response starts at once, attempts and the heartbeat are written
// while the pipeline runs, and the stream returned writes first_token and
// done as it passes. A failure is returned as a stream carrying it, for
// the dialect's encoder to send in-stream: the response has started.
func (s *Server) executeWithProgress(ctx context.Context, w http.ResponseWriter, r *http.Request, o *pipeline.Origin, req *llm.Request) (*llm.Response, llm.Stream, error) {
	p := s.startProgress(ctx, w)
	a, err := func() (pipeline.Answer, error) {
		defer p.Stop() // whatever happens, no heartbeat outlives the pipeline
		return s.engine.Execute(router.WithAttemptObserver(ctx, p), o, req)
	}()
	if err != nil {
		return nil, errStream{s.inStream(r, err)}, nil
	}
	if a.Stream == nil { // the engine answers a streaming request with a stream; be safe
		a.Stream = &llm.SliceStream{Events: llm.Events(a.Response)}
	}
	return a.Response, p.Wrap(a.Stream), nil
}

// answerHeaders sets the headers describing how an answer was obtained.
func (s *Server) answerHeaders(w http.ResponseWriter, a pipeline.Answer) {
	h := w.Header()
	if a.Idempotent {
		h[canonicalIdempotent] = []string{"true"}
	}
	if a.Cache != "" {
		h[canonicalCache] = []string{a.Cache}
	}
	if a.Model != "" {
		h[canonicalModel] = []string{a.Model} // the reply's model is the name asked for (router.Result)
	}
}

// errorEncoder returns the function that renders the errors of the
// client format of a request, from the mark its handler put on the
// context (llm.WithDialect, through X.WithNative).
func errorEncoder(ctx context.Context) func(*llm.Error) (int, []byte) {
	switch llm.DialectOf(ctx) {
	case llm.DialectAnthropic:
		return anthropic.EncodeError
	case llm.DialectGemini:
		return gemini.EncodeError
	case llm.DialectOllama:
		return ollama.EncodeError
	case llm.DialectResponses:
		return responses.EncodeError
	}
	return openai.EncodeError // also embeddings, whose handlers mark no dialect
}

// clientStatus is the HTTP status the client of ctx receives for e: the
// one its dialect's error encoder, which writes the answer, picks — e's
// status, 502 for a failure without one (the upstream could not be
// reached or its answer not read), 529 for an overloaded upstream to
// Anthropic clients, 503 for a 529 to Gemini clients
// (pipeline.Engine.ClientStatus).
func clientStatus(ctx context.Context, e *llm.Error) int {
	status, _ := errorEncoder(ctx)(e)
	return status
}

// embed runs an embedding request through the engine
// (pipeline.Engine.Embed).
func (s *Server) embed(ctx context.Context, r *http.Request, model string, inputs []string, dims int) (*router.EmbedResult, error) {
	o := origin(ctx, r)
	return s.engine.Embed(ctx, &o, model, inputs, dims)
}
