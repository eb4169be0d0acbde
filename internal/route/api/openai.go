package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
)

func openAIErrors(w http.ResponseWriter, e *llm.Error) {
	status, body := openai.EncodeError(e)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) registerOpenAI() {
	s.mux.Handle("POST /v1/chat/completions", s.keyed(openAIErrors, s.chatCompletions))
	s.mux.Handle("POST /v1/providers/{provider}/chat/completions", s.keyed(openAIErrors, s.chatCompletions))
	s.mux.Handle("POST /v1/embeddings", s.keyed(openAIErrors, s.embeddings))
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
	resp, stream, err := s.execute(openai.WithNative(r.Context()), r, req)
	if err != nil {
		return err
	}
	if stream == nil {
		out, err := openai.EncodeResponse(resp)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
		return nil
	}
	streamHeaders(w, "text/event-stream")
	enc := openai.NewStreamEncoder(w, req.IncludeUsage, s.clock.Now().Unix())
	if err := pump(stream, enc.Encode); err != nil {
		s.log.Debug("stream to client ended early", "err", err)
	}
	if err := enc.Close(); err != nil {
		s.log.Debug("closing client stream", "err", err)
	}
	return nil
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
	res, err := s.router.Embed(r.Context(), model, inputs, req.Dimensions)
	if err != nil {
		return err
	}
	u := res.Usage
	if u.InputTokens == 0 {
		for _, in := range inputs {
			u.InputTokens += llm.EstimateTokens(in)
		}
		u.Estimated = true
	}
	out, err := openai.EncodeEmbeddingResponse(req.Model, req.EncodingFormat, res.Vectors, u)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return nil
}
