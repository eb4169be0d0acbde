package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
)

func openAIErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, openai.EncodeError) }

func (s *Server) registerOpenAI() {
	s.mux.Handle("POST /v1/chat/completions", s.keyed(openAIErrors, s.chatCompletions))
	s.mux.Handle("POST /v1/providers/{provider}/chat/completions", s.keyed(openAIErrors, s.chatCompletions))
	s.mux.Handle("POST /v1/embeddings", s.keyed(openAIErrors, s.embeddings))
	s.mux.Handle("GET /v1/embeddings", s.keyed(openAIErrors, s.listModelsOf("embedding")))
	s.mux.Handle("POST /v1/providers/{provider}/embeddings", s.keyed(openAIErrors, s.embeddings))
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := openai.DecodeRequest(body)
	if err != nil {
		return err
	}
	if p := r.PathValue("provider"); p != "" {
		if req.Model, err = s.pinProvider(p, req.Model); err != nil {
			return err
		}
	}
	resp, stream, err := s.execute(openai.WithNative(r.Context()), w, r, req)
	if err != nil {
		return err
	}
	return s.reply(w, resp, stream, openai.EncodeResponse, func(w http.ResponseWriter) streamEncoder {
		return openai.NewStreamEncoder(w, req.IncludeUsage, s.clock.Now().Unix())
	})
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, inputs, err := openai.DecodeEmbeddingRequest(body)
	if err != nil {
		return err
	}
	model := req.Model
	if p := r.PathValue("provider"); p != "" {
		if model, err = s.pinProvider(p, model); err != nil {
			return err
		}
	}
	res, err := s.embed(r.Context(), r, model, inputs, req.Dimensions)
	if err != nil {
		return err
	}
	out, err := openai.EncodeEmbeddingResponse(req.Model, req.EncodingFormat, res.Vectors, res.Usage)
	if err != nil {
		return err
	}
	writeJSONBody(w, out)
	return nil
}
