package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
)

func ollamaErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, ollama.EncodeError) }

// ollamaUnsupported are the endpoints of Ollama's API that manage models
// on the Ollama host, which a gateway has none of: each answers 501 in
// Ollama's error shape (after the key check, like every gateway route).
var ollamaUnsupported = []struct{ method, path, what string }{
	{"POST", "/api/pull", "pull models"},
	{"POST", "/api/push", "push models"},
	{"POST", "/api/create", "create models"},
	{"POST", "/api/copy", "copy models"},
	{"DELETE", "/api/delete", "delete models"},
	{"HEAD", "/api/blobs/{digest}", "store blobs"},
	{"POST", "/api/blobs/{digest}", "store blobs"},
}

// ollamaMethods are the methods each path of Ollama's API is served
// with, for the 405 of another method.
var ollamaMethods = map[string]string{
	"/api/chat": "POST", "/api/generate": "POST", "/api/embed": "POST", "/api/embeddings": "POST",
	"/api/show": "POST", "/api/tags": "GET, HEAD", "/api/ps": "GET, HEAD", "/api/version": "GET, HEAD",
	"/api/pull": "POST", "/api/push": "POST", "/api/create": "POST", "/api/copy": "POST", "/api/delete": "DELETE",
}

// registerOllama serves the Ollama dialect at /api/* (where the Ollama
// clients look) and /v1/api/*. Every other path under these prefixes
// that reaches the gateway (the management API's routes are matched
// before it, see route/app) answers in Ollama's error shape: 405 for a
// path of Ollama's API with another method, 404 for any other path.
func (s *Server) registerOllama() {
	for _, prefix := range []string{"", "/v1"} {
		s.mux.Handle("POST "+prefix+"/api/chat", s.keyed(ollamaErrors, s.ollamaChat))
		s.mux.Handle("POST "+prefix+"/api/generate", s.keyed(ollamaErrors, s.ollamaGenerate))
		s.mux.Handle("GET "+prefix+"/api/tags", s.keyed(ollamaErrors, s.ollamaTags))
		s.mux.Handle("POST "+prefix+"/api/show", s.keyed(ollamaErrors, s.ollamaShow))
		s.mux.Handle("GET "+prefix+"/api/ps", s.keyed(ollamaErrors, s.ollamaPS))
		s.mux.Handle("POST "+prefix+"/api/embed", s.keyed(ollamaErrors, s.ollamaEmbed))
		s.mux.Handle("POST "+prefix+"/api/embeddings", s.keyed(ollamaErrors, s.ollamaEmbeddings))
		s.mux.Handle("GET "+prefix+"/api/version", s.keyed(ollamaErrors, s.ollamaVersion))
		for _, u := range ollamaUnsupported {
			what := u.what
			s.mux.Handle(u.method+" "+prefix+u.path, s.keyed(ollamaErrors, func(http.ResponseWriter, *http.Request) error {
				return &llm.Error{Status: http.StatusNotImplemented, Type: llm.ErrInvalidRequest,
					Message: "the gateway does not " + what + ": it routes to the models its providers serve (GET /api/tags lists them)"}
			}))
		}
		s.mux.Handle(prefix+"/api/", httpx.WithAuth("public", http.HandlerFunc(s.ollamaUnknown)))
	}
}

// ollamaUnknown answers a path under /api/ that no route serves.
func (s *Server) ollamaUnknown(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/v1")
	allow, known := ollamaMethods[p]
	if strings.HasPrefix(p, "/api/blobs/") && !strings.Contains(p[len("/api/blobs/"):], "/") {
		allow, known = "HEAD, POST", true
	}
	if known {
		w.Header().Set("Allow", allow)
		ollamaErrors(w, &llm.Error{Status: http.StatusMethodNotAllowed, Type: llm.ErrInvalidRequest,
			Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
		return
	}
	ollamaErrors(w, &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound,
		Message: fmt.Sprintf("no endpoint %s %s", r.Method, truncated(r.URL.Path, 128))})
}

func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) error {
	start := s.clock.Now()
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := ollama.DecodeRequest(body)
	if err != nil {
		return err
	}
	resp, stream, err := s.execute(ollama.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	return s.ollamaReply(w, resp, stream, start, ollama.EncodeResponseTimed, ollama.NewStreamEncoder)
}

// ollamaGenerate serves /api/generate through the same pipeline as
// /api/chat: the prompt is one user message. A request without a prompt
// only asks for the model to be loaded (or unloaded): it is answered at
// once, after the model and the key's policy are checked.
func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request) error {
	start := s.clock.Now()
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, mode, err := ollama.DecodeGenerateRequest(body)
	if err != nil {
		return err
	}
	if mode != "" {
		if _, err := s.ollamaCard(r.Context(), req.Model); err != nil {
			return err
		}
		writeJSONBody(w, ollama.EncodeGenerateMode(req.Model, mode, s.clock.Now()))
		return nil
	}
	resp, stream, err := s.execute(ollama.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	return s.ollamaReply(w, resp, stream, start, ollama.EncodeGenerateResponseTimed, ollama.NewGenerateStreamEncoder)
}

// ollamaReply sends what execute returned: one object, or NDJSON (not
// SSE: one JSON object per line). The model named is the one the client
// asked for, as the router sets it for every dialect.
func (s *Server) ollamaReply(w http.ResponseWriter, resp *llm.Response, stream llm.Stream, start time.Time,
	encode func(*llm.Response, ollama.Timing) ([]byte, error), newEnc func(w io.Writer, model string, now func() time.Time) *ollama.StreamEncoder) error {
	if stream == nil {
		elapsed := s.clock.Now().Sub(start)
		b, err := encode(resp, ollama.Timing{Total: elapsed, Eval: elapsed})
		if err != nil {
			return err
		}
		writeJSONBody(w, b)
		return nil
	}
	streamHeaders(w, "application/x-ndjson")
	enc := newEnc(w, "", s.clock.Now) // the start event names the model (router.Result)
	if err := pump(stream, enc.Encode); err != nil {
		s.log.Debug("stream to client ended early", "err", err)
	}
	if err := enc.Close(); err != nil {
		s.log.Debug("closing client stream", "err", err)
	}
	return nil // the response has started; nothing else can be sent
}

// ollamaTags lists the models Ollama clients can name: configured chat and
// embedding models (Ollama lists both; /api/embed serves the latter),
// aliases and combos. Image models have no Ollama route.
func (s *Server) ollamaTags(w http.ResponseWriter, r *http.Request) error {
	list := s.models.Models()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	out := ollama.TagsResponse{Models: []ollama.ModelEntry{}}
	for _, m := range list {
		if m.Kind == "image" {
			continue
		}
		out.Models = append(out.Models, ollama.TagEntry(m.ID, m.OwnedBy, s.clock.Now()))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// ollamaShow describes a model the caller may use: what the gateway knows
// of it (see ollama.EncodeShow); a name that routes nowhere is a 404, one
// the key's policy forbids a 403. Nothing reaches an upstream, and nothing
// is counted against the key's limits.
func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	model, err := ollama.DecodeShowRequest(body)
	if err != nil {
		return err
	}
	card, err := s.ollamaCard(r.Context(), model)
	if err != nil {
		return err
	}
	writeJSONBody(w, ollama.EncodeShow(card, s.clock.Now()))
	return nil
}

// ollamaPS lists as "running" the models of /api/tags that the caller's
// key may use: a gateway loads nothing, every model it routes to is ready.
func (s *Server) ollamaPS(w http.ResponseWriter, r *http.Request) error {
	var cards []ollama.ModelCard
	for _, m := range s.models.Models() {
		if m.Kind == "image" || s.permits(r.Context(), m.ID) != nil {
			continue
		}
		cards = append(cards, ollama.ModelCard{Name: m.ID, Family: m.OwnedBy, Kind: m.Kind})
	}
	writeJSONBody(w, ollama.EncodePS(cards))
	return nil
}

// ollamaCard checks that model routes somewhere and that the caller's key
// may use it, and describes it.
func (s *Server) ollamaCard(ctx context.Context, model string) (ollama.ModelCard, error) {
	targets, _, err := s.router.Resolve(model)
	if err != nil || len(targets) == 0 {
		return ollama.ModelCard{}, &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound,
			Message: fmt.Sprintf("model %q not found: name a provider/model, an alias or a combo (GET /api/tags lists them)", model)}
	}
	if err := s.permits(ctx, model); err != nil {
		return ollama.ModelCard{}, err
	}
	list := s.models.Models()
	if i := slices.IndexFunc(list, func(m ModelInfo) bool { return m.ID == model }); i >= 0 {
		return ollama.ModelCard{Name: model, Family: list[i].OwnedBy, Kind: list[i].Kind}, nil
	}
	return ollama.ModelCard{Name: model, Family: targets[0].Provider, Kind: provider.KindOf(targets[0].Model)}, nil
}

// permits asks the gates that hold key policies whether the caller's key
// may use model.
func (s *Server) permits(ctx context.Context, model string) error {
	return s.engine.Permits(ctx, KeyIDFrom(ctx), model)
}

func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) error {
	start := s.clock.Now()
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, inputs, err := ollama.DecodeEmbedRequest(body)
	if err != nil {
		return err
	}
	res, err := s.embed(r.Context(), r, req.Model, inputs, req.Dimensions)
	if err != nil {
		return err
	}
	out, err := ollama.EncodeEmbedResponse(req.Model, res.Vectors, res.Usage, s.clock.Now().Sub(start))
	if err != nil {
		return err
	}
	writeJSONBody(w, out)
	return nil
}

// ollamaEmbeddings serves the legacy /api/embeddings (one prompt, one
// vector) through the same gates and router as /api/embed. An empty
// prompt gets an empty vector, as from Ollama, without an upstream call.
func (s *Server) ollamaEmbeddings(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := ollama.DecodeEmbeddingsRequest(body)
	if err != nil {
		return err
	}
	if req.Prompt == "" {
		if _, err := s.ollamaCard(r.Context(), req.Model); err != nil {
			return err
		}
		writeJSONBody(w, ollama.EncodeEmbeddingsResponse(nil))
		return nil
	}
	res, err := s.embed(r.Context(), r, req.Model, []string{req.Prompt}, 0)
	if err != nil {
		return err
	}
	if len(res.Vectors) != 1 {
		return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: fmt.Sprintf("the upstream answered %d vectors for one prompt", len(res.Vectors))}
	}
	writeJSONBody(w, ollama.EncodeEmbeddingsResponse(res.Vectors[0]))
	return nil
}

// truncated cuts s to at most n bytes, for messages.
func truncated(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

func (s *Server) ollamaVersion(w http.ResponseWriter, r *http.Request) error {
	writeJSONBody(w, ollama.EncodeVersion())
	return nil
}
