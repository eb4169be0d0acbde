// Package api is the HTTP transport of the OmniRoute gateway: the client
// dialect endpoints (/v1/messages, /v1/chat/completions, …), each of which
// decodes its wire format into the canonical model through its format
// package, runs it through the request pipeline's engine (route/pipeline:
// idempotency, gates, cache, router), and encodes the answer — or the
// error — back in the same dialect, streaming or not. It also checks
// gateway API keys and lists models. It holds no routing or pipeline
// logic.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/progress"
	"github.com/omniedge/omni/internal/route/router"
)

// Models lists what /v1/models shows. It is asked on every listing, so
// the list follows providers, aliases and combos changed at run time.
type Models interface {
	// Models returns "provider/model" ids, combo names and aliases.
	Models() []ModelInfo
}

// ModelInfo is one listed model.
type ModelInfo struct {
	ID      string
	OwnedBy string
	Kind    string // chat, embedding, image, combo, alias
}

// KeyChecker finds the gateway key (managed at run time) a raw key is,
// returning its id. It is called on every request, so it must not block
// on I/O.
type KeyChecker interface {
	Lookup(ctx context.Context, raw string) (id string, ok bool)
}

// Config tunes the gateway transport.
type Config struct {
	// RequireAPIKey refuses requests without a valid key from anywhere.
	// Without it, requests without a key are served when AllowAnonymous
	// is set, or when LocalClient says they come from the gateway host.
	// A key that is not valid is refused whatever these say.
	RequireAPIKey  bool
	AllowAnonymous bool
	LocalClient    func(*http.Request) bool // nil: no request is local
	APIKeys        []string                 // raw keys accepted
	Keys           KeyChecker               // further accepted keys (nil: none)
	MaxBody        int64                    // request body limit (default 32 MiB)
	Pipeline       pipeline.Stages          // idempotency, gates and cache around the router
}

// Server serves the gateway API.
type Server struct {
	router *router.Router
	models Models
	clock  clock.Clock
	log    *slog.Logger
	cfg    Config
	keys   [][32]byte
	mux    *httpx.Mux

	engine pipeline.Engine // idempotency → gates → cache → router

	responses pipeline.ResponseStore // conversations behind stored Responses (responses.go)

	// The heartbeat of X-OmniRoute-Progress (progress.go): its period
	// (DefaultProgressInterval when 0) and its ticker (time.NewTicker
	// when nil).
	progressEvery  time.Duration
	progressTicker progress.TickerFunc

	// Requests being handled, for Settle: a gate hears how a call ended
	// before its handler returns.
	inflight atomic.Int64
	idle     chan struct{} // signalled when inflight drops to 0
}

// New builds the server.
func New(r *router.Router, models Models, cfg Config, clk clock.Clock, log *slog.Logger) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 32 << 20
	}
	s := &Server{router: r, models: models, clock: clk, log: log, cfg: cfg, mux: httpx.NewMux(AuthGatewayKey),
		engine: pipeline.Engine{Router: r, Stages: cfg.Pipeline, Clock: clk, Log: log, ClientStatus: clientStatus, RequestID: httpx.RequestID},
		idle:   make(chan struct{}, 1)}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	if !cfg.RequireAPIKey && !cfg.AllowAnonymous && cfg.LocalClient != nil && log != nil {
		// A reverse proxy on this host that relays without saying so
		// (nginx's proxy_pass sends Host 127.0.0.1:… and no
		// X-Forwarded-For by default) looks like a local client.
		log.Warn("gateway requests without a key are served to clients on this host (loopback); " +
			"a reverse proxy on this host would make every client it relays such a client: " +
			"behind one, set REQUIRE_API_KEY=true (--require-api-key)")
	}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.handled()
	s.mux.ServeHTTP(w, r)
}

// AuthGatewayKey names, in the route list, the routes that take a
// gateway key (or none, from the gateway host or when anonymous use is
// allowed).
const AuthGatewayKey = "gateway key"

// Routes lists the routes the server serves (for the endpoint table).
func (s *Server) Routes() []httpx.Route { return s.mux.Routes() }

func (s *Server) handled() {
	if s.inflight.Add(-1) == 0 {
		select {
		case s.idle <- struct{}{}:
		default:
		}
	}
}

// Settle waits until no request is being handled, so that every call
// has been settled with the gates (spend, usage), or until ctx ends. A
// server that shut down (or gave up waiting) may still be running
// handlers; their outcomes reach the gates only as they return.
func (s *Server) Settle(ctx context.Context) error {
	for s.inflight.Load() > 0 {
		select {
		case <-s.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *Server) routes() {
	s.mux.Handle("POST /v1/messages", s.keyed(anthropicErrors, s.anthropicMessages))
	s.mux.Handle("POST /v1/messages/count_tokens", s.keyed(anthropicErrors, s.anthropicCountTokens))
	s.mux.Handle("GET /v1/models", s.keyed(openAIErrors, s.listModels))
	s.registerOpenAI()
	s.registerResponses()
	s.registerGemini()
	s.registerOllama()
	s.registerWS()
}

// errorWriter renders an *llm.Error in a dialect's shape.
type errorWriter func(w http.ResponseWriter, e *llm.Error)

// keyed checks the gateway API key and renders failures of h in the
// dialect's error shape.
func (s *Server) keyed(ew errorWriter, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.authorized(ew, h, false)
}

// geminiKeyed is keyed for the Gemini routes, which also take the key as
// ?key= (as Google's API does); elsewhere a key in the URL would only end
// up in access logs and histories.
func (s *Server) geminiKeyed(ew errorWriter, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.authorized(ew, h, true)
}

func (s *Server) authorized(ew errorWriter, h func(http.ResponseWriter, *http.Request) error, queryKey bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, presented := s.findKey(r, queryKey)
		var refuse string
		switch {
		case id != "":
		case presented:
			// Never anonymous: a typo, a revoked or a guessed key would
			// otherwise escape the key's policy and budget.
			refuse = "invalid API key"
		case s.cfg.RequireAPIKey:
			refuse = "missing API key: send Authorization: Bearer <key>, x-api-key or x-goog-api-key"
		case s.cfg.AllowAnonymous, s.cfg.LocalClient != nil && s.cfg.LocalClient(r):
		default:
			refuse = "missing API key: requests without a key are served from the gateway host only " +
				"(send Authorization: Bearer <key>, x-api-key or x-goog-api-key)"
		}
		if refuse != "" {
			ew(w, &llm.Error{Status: http.StatusUnauthorized, Type: llm.ErrAuthentication, Message: refuse})
			return
		}
		if id != "" {
			r = r.WithContext(withKeyID(r.Context(), id))
		}
		if id := sessionID(r); id != "" {
			w.Header().Set("X-OmniRoute-Session-Id", id)
			r = r.WithContext(router.WithSession(r.Context(), id))
		}
		if err := h(w, r); err != nil {
			ew(w, s.toLLMError(r, err))
		}
	})
}

// sessionID is the client's sticky-session key: X-Session-Id, or the
// underscore spelling x_session_id that some HTTP clients send. It is
// never forwarded upstream.
func sessionID(r *http.Request) string {
	id := r.Header.Get("X-Session-Id")
	if id == "" {
		id = r.Header.Get("x_session_id")
	}
	if len(id) > 256 {
		id = id[:256]
	}
	return id
}

// findKey looks for a valid key in any header the SDKs use (and, with
// query, in ?key=) and returns its id: a managed key's id, or "config:N"
// for the N-th (1-based) key of the configuration. presented reports
// whether the request carried any key at all.
func (s *Server) findKey(r *http.Request, query bool) (id string, presented bool) {
	cands := [4]string{r.Header.Get("x-api-key"), r.Header.Get("x-goog-api-key")}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		cands[2] = strings.TrimSpace(a[7:])
	}
	if query {
		cands[3] = r.URL.Query().Get("key")
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		presented = true
		sum := sha256.Sum256([]byte(c))
		for i, k := range s.keys {
			if subtle.ConstantTimeCompare(sum[:], k[:]) == 1 {
				return "config:" + strconv.Itoa(i+1), true
			}
		}
		if s.cfg.Keys != nil {
			if id, ok := s.cfg.Keys.Lookup(r.Context(), c); ok {
				return id, true
			}
		}
	}
	return "", presented
}

// toLLMError turns any handler error into an *llm.Error; causes of
// unexpected errors are logged, not sent.
func (s *Server) toLLMError(r *http.Request, err error) *llm.Error {
	var le *llm.Error
	if errors.As(err, &le) {
		var ex *router.ExhaustedError
		if errors.As(err, &ex) && len(ex.Attempts) > 1 {
			c := *le
			c.Attempts = make([]llm.Attempt, len(ex.Attempts))
			for i, a := range ex.Attempts {
				c.Attempts[i] = llm.Attempt{Target: a.Provider + "/" + a.Model, Connection: a.Connection, Status: a.Status, Error: a.Error, ElapsedMS: a.Elapsed.Milliseconds()}
			}
			return &c
		}
		return le
	}
	var he *httpx.Error
	if errors.As(err, &he) {
		return &llm.Error{Status: he.Status, Type: llm.TypeForStatus(he.Status), Code: he.Code, Message: he.Message}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		// A body read past the endpoint's cap by a handler that reads
		// its own body (uploads).
		return &llm.Error{Status: http.StatusRequestEntityTooLarge, Type: llm.ErrInvalidRequest, Code: "body_too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	}
	if errors.Is(err, context.Canceled) {
		return &llm.Error{Status: 499, Type: llm.ErrInvalidRequest, Message: "client closed the request"}
	}
	httpx.LogError(s.log, r, "gateway request failed", err)
	return &llm.Error{Status: http.StatusInternalServerError, Type: llm.ErrServer, Message: "internal gateway error"}
}

// pinProvider applies a dedicated provider route to a model name: the
// provider prefix is added when missing; a model naming another
// configured provider is a 400. Model names may contain slashes of their
// own ("Qwen/Qwen3-8B"), so only a configured provider counts as a prefix.
func (s *Server) pinProvider(provider, model string) (string, error) {
	if len(s.router.Connections(provider)) == 0 {
		return "", &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Message: "provider " + provider + " is not configured"}
	}
	if p, _, ok := router.SplitModel(model); ok {
		if p == provider {
			return model, nil
		}
		if len(s.router.Connections(p)) > 0 {
			return "", &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest,
				Message: "model " + model + " belongs to provider " + p + ", not " + provider}
		}
	}
	return provider + "/" + model, nil
}

// retryAfter renders an error's Retry-After in whole seconds (at least 1).
func retryAfter(e *llm.Error) string {
	return strconv.Itoa(max(1, int(math.Ceil(e.RetryAfter.Seconds()))))
}

// writeError renders e with a dialect's encoder.
func writeError(w http.ResponseWriter, e *llm.Error, encode func(*llm.Error) (int, []byte)) {
	status, body := encode(e)
	if len(e.Attempts) > 0 {
		body = withAttempts(body, e.Attempts)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// withAttempts adds the attempt list beside a dialect's error object
// ({"error": …, "attempts": […]}); SDKs ignore fields they do not know.
func withAttempts(body []byte, attempts []llm.Attempt) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	a, err := json.Marshal(attempts)
	if err != nil {
		return body
	}
	m["attempts"] = a
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// writeJSONBody writes an already encoded JSON body.
func writeJSONBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// streamEncoder is what every dialect's stream encoder offers.
type streamEncoder interface {
	Encode(llm.Event) error
	Close() error
}

// reply sends what execute returned: the response through encode, or the
// stream through the encoder newEnc builds on w.
func (s *Server) reply(w http.ResponseWriter, resp *llm.Response, stream llm.Stream,
	encode func(*llm.Response) ([]byte, error), newEnc func(http.ResponseWriter) streamEncoder) error {
	if stream == nil {
		out, err := encode(resp)
		if err != nil {
			return err
		}
		writeJSONBody(w, out)
		return nil
	}
	if !progressOn(w) { // else sent with the first progress line
		streamHeaders(w, "text/event-stream")
	}
	enc := newEnc(w)
	if err := pump(stream, enc.Encode); err != nil {
		s.log.Debug("stream to client ended early", "err", err)
	}
	if err := enc.Close(); err != nil {
		s.log.Debug("closing client stream", "err", err)
	}
	return nil // the response has started; nothing else can be sent
}

// streamHeaders prepares an SSE response.
func streamHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// pump copies a canonical stream into a dialect encoder until the stream
// ends. A failure after the first byte is sent in-stream, in the dialect's
// shape, by the encoder; it is never retried elsewhere.
func pump(s llm.Stream, encode func(llm.Event) error) error {
	defer s.Close()
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) {
				le = &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream failed", InStream: true}
			}
			return encode(llm.Event{Type: llm.EventError, Err: le})
		}
		if err := encode(ev); err != nil {
			return err // the client went away
		}
		if ev.Type == llm.EventError {
			return nil
		}
	}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) error {
	return s.writeModels(w, "")
}

// listModelsOf lists the models of one kind (GET /v1/embeddings).
func (s *Server) listModelsOf(kind string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error { return s.writeModels(w, kind) }
}

// writeModels writes the OpenAI model list, of every kind or of one.
func (s *Server) writeModels(w http.ResponseWriter, kind string) error {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
		Type    string `json:"type,omitempty"`
	}
	list := s.models.Models()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(list))}
	for _, m := range list {
		if kind != "" && m.Kind != kind {
			continue
		}
		out.Data = append(out.Data, model{ID: m.ID, Object: "model", Created: 0, OwnedBy: m.OwnedBy, Type: m.Kind})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
