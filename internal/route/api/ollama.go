package api

import (
	"net/http"
	"sort"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/llm"
)

func ollamaErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, ollama.EncodeError) }

// registerOllama serves the Ollama dialect at /api/* (where the Ollama
// clients look) and /v1/api/*.
func (s *Server) registerOllama() {
	for _, prefix := range []string{"", "/v1"} {
		s.mux.Handle("POST "+prefix+"/api/chat", s.keyed(ollamaErrors, s.ollamaChat))
		s.mux.Handle("GET "+prefix+"/api/tags", s.keyed(ollamaErrors, s.ollamaTags))
		s.mux.Handle("POST "+prefix+"/api/embed", s.keyed(ollamaErrors, s.ollamaEmbed))
		s.mux.Handle("GET "+prefix+"/api/version", s.keyed(ollamaErrors, s.ollamaVersion))
	}
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
	if stream == nil {
		elapsed := s.clock.Now().Sub(start)
		b, err := ollama.EncodeResponseTimed(resp, ollama.Timing{Total: elapsed, Eval: elapsed})
		if err != nil {
			return err
		}
		writeJSONBody(w, b)
		return nil
	}
	// NDJSON, not SSE: one JSON object per line.
	streamHeaders(w, "application/x-ndjson")
	enc := ollama.NewStreamEncoder(w, "", s.clock.Now) // the start event names the model (router.Result)
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

func (s *Server) ollamaVersion(w http.ResponseWriter, r *http.Request) error {
	writeJSONBody(w, ollama.EncodeVersion())
	return nil
}
