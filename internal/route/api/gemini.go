package api

import (
	"net/http"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/llm"
)

func geminiErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, gemini.EncodeError) }

// registerGemini serves the Gemini API dialect. Model actions are served
// under /v1beta (the API's default) and /v1 (current genai SDKs' default);
// the model lists only under /v1beta, since GET /v1/models is OpenAI's.
func (s *Server) registerGemini() {
	s.mux.Handle("GET /v1beta/models", s.geminiKeyed(geminiErrors, s.geminiListModels))
	s.mux.Handle("GET /v1beta/models/{name...}", s.geminiKeyed(geminiErrors, s.geminiGetModel))
	s.mux.Handle("POST /v1beta/models/{rest...}", s.geminiKeyed(geminiErrors, s.geminiAction))
	s.mux.Handle("POST /v1/models/{rest...}", s.geminiKeyed(geminiErrors, s.geminiAction))
}

func geminiNotFound(msg string) *llm.Error {
	return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Message: msg}
}

// geminiAction dispatches models/{model}:{method}. The model may contain
// slashes (provider/model ids); the method follows the last colon.
func (s *Server) geminiAction(w http.ResponseWriter, r *http.Request) error {
	rest := r.PathValue("rest")
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return geminiNotFound("unknown path: expected models/{model}:{method}")
	}
	model, method := strings.TrimPrefix(rest[:i], "models/"), rest[i+1:]
	if model == "" {
		return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: "model: required in the URL"}
	}
	if err := llm.CheckModel("model (in the URL)", model); err != nil {
		return err
	}
	switch method {
	case "generateContent":
		return s.geminiGenerate(w, r, model, false)
	case "streamGenerateContent":
		return s.geminiGenerate(w, r, model, true)
	case "countTokens":
		return s.geminiCountTokens(w, r, model)
	case "embedContent", "batchEmbedContents":
		return s.geminiEmbed(w, r, model, method == "batchEmbedContents")
	}
	return geminiNotFound("method " + method + " is not served; the gateway serves generateContent, streamGenerateContent, countTokens, embedContent and batchEmbedContents")
}

// geminiGenerate serves :generateContent and :streamGenerateContent. A
// stream is SSE with ?alt=sse and otherwise, as Gemini does, one JSON
// array whose elements are written as they come.
func (s *Server) geminiGenerate(w http.ResponseWriter, r *http.Request, model string, stream bool) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := gemini.DecodeRequest(model, body, stream)
	if err != nil {
		return err
	}
	resp, st, err := s.execute(gemini.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	if st == nil || r.URL.Query().Get("alt") == "sse" {
		return s.reply(w, resp, st, gemini.EncodeResponse, func(w http.ResponseWriter) streamEncoder {
			return gemini.NewStreamEncoder(w)
		})
	}
	streamHeaders(w, "application/json")
	enc := gemini.NewArrayStreamEncoder(w)
	if err := pump(st, enc.Encode); err != nil {
		s.log.Debug("stream to client ended early", "err", err)
	}
	if err := enc.Close(); err != nil {
		s.log.Debug("closing client stream", "err", err)
	}
	return nil
}

func (s *Server) geminiCountTokens(w http.ResponseWriter, r *http.Request, model string) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := gemini.DecodeCountTokens(model, body)
	if err != nil {
		return err
	}
	n, err := s.countTokens(gemini.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	writeJSONBody(w, gemini.EncodeCountTokens(n))
	return nil
}

func (s *Server) geminiEmbed(w http.ResponseWriter, r *http.Request, model string, batch bool) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	var inputs []string
	var dims int
	if batch {
		inputs, dims, err = gemini.DecodeBatchEmbedContents(body)
	} else {
		var text string
		text, dims, err = gemini.DecodeEmbedContent(body)
		inputs = []string{text}
	}
	if err != nil {
		return err
	}
	res, err := s.embed(r.Context(), r, model, inputs, dims)
	if err != nil {
		return err
	}
	if len(res.Vectors) != len(inputs) {
		return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream returned the wrong number of embeddings"}
	}
	var out []byte
	if batch {
		out, err = gemini.EncodeBatchEmbedContents(res.Vectors)
	} else {
		out, err = gemini.EncodeEmbedContent(res.Vectors[0])
	}
	if err != nil {
		return err
	}
	writeJSONBody(w, out)
	return nil
}

func (s *Server) geminiListModels(w http.ResponseWriter, r *http.Request) error {
	list := s.models.Models()
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	out := gemini.ListModelsResponse{Models: make([]gemini.Model, 0, len(list))}
	for _, m := range list {
		out.Models = append(out.Models, gemini.ModelEntry(m.ID, m.Kind == "embedding"))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) geminiGetModel(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.PathValue("name"), "models/")
	for _, m := range s.models.Models() {
		if m.ID == name {
			httpx.WriteJSON(w, http.StatusOK, gemini.ModelEntry(m.ID, m.Kind == "embedding"))
			return nil
		}
	}
	return geminiNotFound("model " + name + " is not configured")
}
