// Package router owns how the gateway chooses where a request goes: it
// resolves a client's model name (a "provider/model" id, an alias, a combo
// or a combo mapping by glob pattern) into an ordered list of targets,
// picks a healthy connection (credential) of each target's provider
// round-robin, and falls back to the next connection and the next target
// on connection errors, 408, 429 and 5xx — only before the first byte has
// reached the client. A Health tracker, when installed, vetoes attempts
// at blocked providers, connections and models and hears every outcome.
// It also sends token counts to the target's upstream when its adapter
// counts (TokenCounter). It speaks only the canonical model (route/llm).
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// Adapter is what the router needs from a provider connection.
type Adapter interface {
	Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error)
	Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error)
}

// OutputBounder is the optional capability of adapters that know the most
// output an upstream may bill for a request as they send it (the cap
// they send, their default when the request has none, thinking billed
// beyond it). Budgets reserve it.
type OutputBounder interface {
	OutputBound(req *llm.Request) llm.OutputBound
}

// Connection is one credential of a provider.
type Connection struct {
	ID      string
	Adapter Adapter
	// Prepare, when set, adapts a request to the target model before
	// each attempt (dropping parameters the model rejects). It must not
	// modify req; it returns req itself or a changed copy.
	Prepare func(req *llm.Request, model string) *llm.Request
	// Timeout, when set, bounds an attempt until its first answer: the
	// whole response, or a stream's first event. An attempt that runs
	// out is a retryable 504 and the next connection or target is tried.
	Timeout time.Duration
}

// Target is one place a request can go: a provider and its model name.
type Target struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Weight   int    `json:"weight,omitempty"` // for the weighted strategy
}

// String is "provider/model".
func (t Target) String() string { return t.Provider + "/" + t.Model }

// Attempt records one try.
type Attempt struct {
	Provider   string        `json:"provider"`
	Model      string        `json:"model"`
	Connection string        `json:"connection"`
	Status     int           `json:"status"`
	Error      string        `json:"error,omitempty"`
	Elapsed    time.Duration `json:"elapsed"`
	// Sent reports that the request reached the upstream: its headers
	// were written to the connection. Attempts the health tracker
	// vetoed, that found no connection or whose dial failed were not.
	Sent bool `json:"sent,omitempty"`
	// Cut reports an attempt that failed after it was sent without the
	// upstream's own error answer: it timed out, the connection broke,
	// the client left, or a stream the upstream had accepted failed
	// before its first event. The upstream may bill such an attempt.
	Cut bool `json:"cut,omitempty"`
}

// Catalog answers where a model name leads. The management API keeps it
// current; the router only reads it.
type Catalog interface {
	// Resolve returns the targets for a client model name and the
	// strategy that orders them ("" for a single target).
	Resolve(model string) (targets []Target, strategy string, err error)
	// Connections returns the usable connections of a provider.
	Connections(provider string) []Connection
}

// ErrUnknownModel is returned (wrapped in *llm.Error 404) for names that
// lead nowhere.
var ErrUnknownModel = errors.New("unknown model")

// Router executes requests with fallback.
type Router struct {
	catalog Catalog
	clock   clock.Clock
	stats   *Stats
	rr      sync.Map // provider -> *atomic.Uint64 (connection round-robin)
	combos  rotations
	pricer  atomic.Pointer[Pricer]
	health  atomic.Pointer[Health]
	pins    pins
}

// New returns a router over catalog.
func New(catalog Catalog, clk clock.Clock) *Router {
	return &Router{catalog: catalog, clock: clk, stats: NewStats()}
}

// Connections returns the configured connections of a provider.
func (r *Router) Connections(provider string) []Connection { return r.catalog.Connections(provider) }

// Resolve returns the targets a client model name leads to (for the
// metadata endpoints; Chat and Stream resolve on their own).
func (r *Router) Resolve(model string) ([]Target, string, error) { return r.catalog.Resolve(model) }

// Stats returns the per-target statistics the strategies use.
func (r *Router) Stats() *Stats { return r.stats }

// Result is a successful execution.
//
// A reply is named after the model the request asked for (the request's
// Model: a provider/model id, an alias or a combo), whatever target
// answered and whatever name the upstream gave: Response.Model and the
// Model of the stream's start event are that name. Target says which
// provider and model answered.
type Result struct {
	Response *llm.Response // for Chat
	Stream   llm.Stream    // for Stream: the first event is already buffered
	Target   Target
	Attempts []Attempt
}

// ExhaustedError is returned when every target failed; it wraps the last
// upstream error.
type ExhaustedError struct {
	Last     *llm.Error
	Attempts []Attempt
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("all %d attempts failed; last: %v", len(e.Attempts), e.Last)
}

func (e *ExhaustedError) Unwrap() error { return e.Last }

// AbortedError is returned when the request's context ended (the client
// left) during routing; it wraps the context's error and keeps the
// attempts made until then.
type AbortedError struct {
	Err      error
	Attempts []Attempt
}

func (e *AbortedError) Error() string { return e.Err.Error() }

func (e *AbortedError) Unwrap() error { return e.Err }

// AttemptsOf returns the attempts an error of Chat, Stream or Embed
// records (nil for other errors).
func AttemptsOf(err error) []Attempt {
	var ex *ExhaustedError
	if errors.As(err, &ex) {
		return ex.Attempts
	}
	var ab *AbortedError
	if errors.As(err, &ab) {
		return ab.Attempts
	}
	return nil
}

// aborted wraps the context's error with the attempts so far.
func aborted(err error, attempts []Attempt) error {
	if len(attempts) == 0 {
		return err
	}
	return &AbortedError{Err: err, Attempts: attempts}
}

// Chat sends a non-streaming request.
func (r *Router) Chat(ctx context.Context, req *llm.Request) (*Result, error) {
	return r.execute(ctx, req, false)
}

// Stream sends a streaming request. Fallback happens until the upstream
// yields its first event; after that an error is the client's to see.
func (r *Router) Stream(ctx context.Context, req *llm.Request) (*Result, error) {
	return r.execute(ctx, req, true)
}

func (r *Router) execute(ctx context.Context, req *llm.Request, stream bool) (*Result, error) {
	var res *Result
	t, attempts, err := r.run(ctx, req.Model, func(actx context.Context, c Connection, t Target, tr *attemptTrace) error {
		var err error
		res, err = r.try(actx, c, req, t, stream, tr)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Target, res.Attempts = t, attempts
	return res, nil
}

// run resolves model and calls try on each connection of each target, in
// strategy order, until one succeeds or an error is not worth retrying.
func (r *Router) run(ctx context.Context, model string, try tryFunc) (Target, []Attempt, error) {
	targets, strategy, err := r.catalog.Resolve(model)
	if err != nil {
		return Target{}, nil, &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Message: err.Error()}
	}
	targets, refused := filterTargets(ctx, targets)
	if len(targets) == 0 {
		return Target{}, refused, &ExhaustedError{Attempts: refused, Last: &llm.Error{Status: http.StatusForbidden,
			Type: llm.ErrPermission, Message: "model " + model + " is not allowed for this API key"}}
	}
	targets = r.order(model, targets, strategy)
	session := sessionOf(ctx)
	pinned, sticky := r.pins.get(session, r.clock.Now())
	if sticky {
		targets = stickTargets(targets, strategy, pinned)
	}
	h := r.healthOf()
	var attempts []Attempt
	var since time.Time
	for round := 0; ; round++ {
		before := len(attempts)
		var t Target
		var blk blocked
		var err error
		t, attempts, blk, err = r.pass(ctx, attempts, targets, session, pinned, sticky, strategy != "", h, try)
		if err == nil || blk.n == 0 || blk.n < len(attempts)-before {
			return t, attempts, err
		}
		// Nothing was tried: every connection is blocked. Queue for the
		// earliest to recover, when the health tracker has a queue.
		now := r.clock.Now()
		w, ok := h.(Waiter)
		if round == 0 {
			since = now
		}
		if !ok || round >= maxWaitRounds || w.Wait(ctx, since, blk.earliest) != nil {
			if cerr := ctx.Err(); cerr != nil {
				return Target{}, attempts, aborted(cerr, attempts)
			}
			last := blk.err(r.clock.Now())
			return Target{}, attempts, &ExhaustedError{Last: last, Attempts: attempts}
		}
	}
}

// maxWaitRounds bounds how often one request queues again after a wait
// (another request may take a recovered connection's single probe).
const maxWaitRounds = 4

// pass tries each connection of each target once, in order, skipping the
// ones h blocks, and appends to attempts. blk counts the skips; when every
// attempt of the pass was a skip, nothing reached an upstream.
func (r *Router) pass(ctx context.Context, attempts []Attempt, targets []Target, session string, pinned pin, sticky, combo bool, h Health,
	try tryFunc) (Target, []Attempt, blocked, error) {
	var blk blocked
	var last *llm.Error
	obs := observerOf(ctx)
	for _, t := range targets {
		conns := r.connections(t.Provider)
		if sticky {
			conns = stickConnections(conns, pinned)
		}
		if len(conns) == 0 {
			attempts = append(attempts, Attempt{Provider: t.Provider, Model: t.Model, Error: "no connection configured"})
			last = &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Provider: t.Provider, Message: "provider has no usable connection"}
			continue
		}
		for _, c := range conns {
			if err := ctx.Err(); err != nil {
				return Target{}, attempts, blk, aborted(err, attempts)
			}
			if h != nil {
				if ok, b := h.Available(t.Provider, c.ID, t.Model); !ok {
					blk.add(b)
					attempts = append(attempts, Attempt{Provider: t.Provider, Model: t.Model, Connection: c.ID, Status: b.Status, Error: b.Reason})
					continue
				}
			}
			if obs != nil {
				obs.Attempting(t.String())
			}
			var tr attemptTrace
			start := r.clock.Now()
			err := try(tr.context(ctx), c, t, &tr)
			elapsed := r.clock.Now().Sub(start)
			a := Attempt{Provider: t.Provider, Model: t.Model, Connection: c.ID, Elapsed: elapsed, Sent: tr.sent.Load()}
			if err == nil {
				a.Status = http.StatusOK
				if combo { // only a combo's strategy reads the statistics
					r.stats.Record(t.String(), elapsed, true)
				}
				if h != nil {
					h.Observe(t.Provider, c.ID, t.Model, http.StatusOK, 0)
				}
				if session != "" {
					r.pins.set(session, pin{target: t.String(), connection: c.ID, until: r.clock.Now().Add(SessionTTL)}, r.clock.Now())
				}
				return t, append(attempts, a), blk, nil
			}
			if ua, ule, ok := unsupported(err, t, c); ok {
				// Not this provider's operation: the next target may
				// serve it; nothing is held against the provider.
				attempts, last = append(attempts, ua), ule
				continue
			}
			le := asLLMError(err, t.Provider)
			a.Status, a.Error = le.Status, le.Message
			a.Cut = tr.cut(ctx, le)
			if obs != nil {
				obs.AttemptFailed(le.Status)
			}
			attempts = append(attempts, a)
			if combo {
				r.stats.Record(t.String(), elapsed, false)
			}
			last = le
			if ctx.Err() != nil {
				return Target{}, attempts, blk, aborted(ctx.Err(), attempts)
			}
			if h != nil {
				st := le.Status
				if st < 400 && st != 0 { // an error event inside a 200 stream
					st = http.StatusServiceUnavailable
				}
				h.Observe(t.Provider, c.ID, t.Model, st, le.RetryAfter)
			}
			if !le.Retryable() {
				// A client error (bad request…) is not fixed by another
				// target; an auth or permission failure is specific to
				// the credential, so the next connection may work.
				if le.Status == http.StatusUnauthorized || le.Status == http.StatusForbidden {
					continue
				}
				return Target{}, attempts, blk, &ExhaustedError{Last: le, Attempts: attempts}
			}
		}
	}
	if last == nil {
		last = &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Message: "no target available"}
	}
	return Target{}, attempts, blk, &ExhaustedError{Last: last, Attempts: attempts}
}

// Embedder is the optional capability of adapters that produce embeddings.
type Embedder interface {
	Embed(ctx context.Context, model string, inputs []string, dimensions int) ([][]float32, llm.Usage, error)
}

// EmbedResult is a successful embedding request.
type EmbedResult struct {
	Vectors  [][]float32
	Usage    llm.Usage
	Target   Target
	Attempts []Attempt
}

// Embed embeds inputs with fallback, like Chat. Connections whose adapter
// cannot embed are skipped as a 400 would be: the model is not an
// embedding model there.
func (r *Router) Embed(ctx context.Context, model string, inputs []string, dimensions int) (*EmbedResult, error) {
	var res EmbedResult
	t, attempts, err := r.run(ctx, model, func(ctx context.Context, c Connection, t Target, _ *attemptTrace) error {
		e, ok := c.Adapter.(Embedder)
		if !ok {
			return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: "provider " + t.Provider + " does not serve embeddings"}
		}
		var err error
		res.Vectors, res.Usage, err = e.Embed(ctx, t.Model, inputs, dimensions)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Target, res.Attempts = t, attempts
	return &res, nil
}

func (r *Router) try(ctx context.Context, c Connection, req *llm.Request, t Target, stream bool, tr *attemptTrace) (*Result, error) {
	name := req.Model // what the reply is named after (Result)
	if c.Prepare != nil {
		req = c.Prepare(req, t.Model)
	}
	if c.Timeout > 0 {
		return r.tryTimed(ctx, c, req, t, stream, tr)
	}
	if !stream {
		resp, err := c.Adapter.Chat(ctx, req, t.Model)
		if err != nil {
			return nil, err
		}
		resp.Model = name
		return &Result{Response: resp}, nil
	}
	s, err := c.Adapter.Stream(ctx, req, t.Model)
	if err != nil {
		return nil, err
	}
	tr.accepted = true // the upstream answered 2xx: it is working on the request
	first, err := s.Next()
	if err != nil {
		s.Close()
		if errors.Is(err, io.EOF) {
			return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: t.Provider,
				Message: t.Provider + ": upstream stream failed: it ended before any event"}
		}
		return nil, err
	}
	if first.Type == llm.EventError && first.Err != nil {
		s.Close()
		tr.accepted = false // the upstream's own error answer, in-stream
		return nil, first.Err
	}
	if first.Type == llm.EventStart {
		first.Model = name
	}
	return &Result{Stream: &peeked{first: &first, Stream: s, model: name}}, nil
}

// tryTimed is try bounded by c.Timeout until the first answer. The
// attempt's context outlives the timer for a stream, which keeps reading
// after its first event; closing the stream releases it.
func (r *Router) tryTimed(ctx context.Context, c Connection, req *llm.Request, t Target, stream bool, tr *attemptTrace) (*Result, error) {
	actx, cancel := context.WithCancel(ctx)
	limit := c.Timeout
	timer := time.AfterFunc(limit, func() { tr.timedOut.Store(true); cancel() })
	c.Timeout = 0
	res, err := r.try(actx, c, req, t, stream, tr)
	stopped := timer.Stop()
	if err != nil || !stopped {
		cancel()
		if res != nil && res.Stream != nil {
			res.Stream.Close()
		}
		if tr.timedOut.Load() && ctx.Err() == nil {
			return nil, &llm.Error{Status: http.StatusGatewayTimeout, Type: llm.ErrTimeout, Provider: t.Provider,
				Message: fmt.Sprintf("%s: upstream unreachable: no answer within %s", t.Provider, limit)}
		}
		return nil, err
	}
	if res.Stream == nil {
		cancel()
		return res, nil
	}
	res.Stream = &cancelOnClose{Stream: res.Stream, cancel: cancel}
	return res, nil
}

// tryFunc makes one attempt at a connection of a target, with ctx
// carrying the attempt's trace.
type tryFunc func(ctx context.Context, c Connection, t Target, tr *attemptTrace) error

// attemptTrace learns from the HTTP client (net/http/httptrace) whether
// an attempt's request reached the upstream and whether an answer came
// back, and from the router how the attempt ended.
type attemptTrace struct {
	sent     atomic.Bool // request headers written
	answered atomic.Bool // first byte of an answer read
	timedOut atomic.Bool // Connection.Timeout ran out
	accepted bool        // a stream's upstream answered 2xx
	trace    httptrace.ClientTrace
}

// context returns ctx carrying tr's hooks, which compose with any trace
// ctx already has.
func (tr *attemptTrace) context(ctx context.Context) context.Context {
	tr.trace.WroteHeaders = tr.wroteHeaders
	tr.trace.GotFirstResponseByte = tr.gotFirstByte
	return httptrace.WithClientTrace(ctx, &tr.trace)
}

func (tr *attemptTrace) wroteHeaders() { tr.sent.Store(true) }
func (tr *attemptTrace) gotFirstByte() { tr.answered.Store(true) }

// cut reports whether an attempt that failed with le after being sent
// may be billed: every way it can end except the upstream's own error
// answer (a 4xx or 5xx it sent back, or an error event opening a stream).
func (tr *attemptTrace) cut(ctx context.Context, le *llm.Error) bool {
	if !tr.sent.Load() {
		return false
	}
	return tr.accepted || tr.timedOut.Load() || ctx.Err() != nil || !tr.answered.Load() || le.Status == 0
}

// cancelOnClose releases an attempt's context with its stream.
type cancelOnClose struct {
	llm.Stream
	cancel context.CancelFunc
}

func (s *cancelOnClose) Close() error {
	err := s.Stream.Close()
	s.cancel()
	return err
}

// peeked replays the buffered first event before reading on, and names
// the stream's start event after the model the request asked for.
type peeked struct {
	first *llm.Event
	llm.Stream
	model string
}

func (p *peeked) Next() (llm.Event, error) {
	if p.first != nil {
		ev := *p.first
		p.first = nil
		return ev, nil
	}
	ev, err := p.Stream.Next()
	if ev.Type == llm.EventStart {
		ev.Model = p.model
	}
	return ev, err
}

// asLLMError makes err an *llm.Error naming provider. The router's own
// texts of upstream failures follow the adapters' pattern
// (upstreamhttp): "<provider>: upstream <what happened>: <detail>".
func asLLMError(err error, provider string) *llm.Error {
	var le *llm.Error
	if errors.As(err, &le) {
		if le.Provider == "" {
			c := *le
			c.Provider = provider
			return &c
		}
		return le
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &llm.Error{Status: http.StatusGatewayTimeout, Type: llm.ErrTimeout, Provider: provider, Message: provider + ": upstream unreachable: timed out"}
	}
	return &llm.Error{Status: 0, Type: llm.ErrServer, Provider: provider, Message: err.Error()}
}

// connections rotates the provider's connections so load spreads
// round-robin while the rest remain as fallbacks.
func (r *Router) connections(provider string) []Connection {
	conns := r.catalog.Connections(provider)
	if len(conns) <= 1 {
		return conns
	}
	v, _ := r.rr.LoadOrStore(provider, new(atomic.Uint64))
	n := int(v.(*atomic.Uint64).Add(1)-1) % len(conns)
	out := make([]Connection, 0, len(conns))
	out = append(out, conns[n:]...)
	return append(out, conns[:n]...)
}

// SplitModel splits "provider/model" at the first slash; model names may
// contain more slashes ("nebius/Qwen/Qwen3-Embedding-8B").
func SplitModel(id string) (provider, model string, ok bool) {
	provider, model, ok = strings.Cut(id, "/")
	if !ok || provider == "" || model == "" {
		return "", "", false
	}
	return provider, model, true
}
