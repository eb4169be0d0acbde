package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/llm"
)

func anthropicErrors(w http.ResponseWriter, e *llm.Error) {
	status, body := anthropic.EncodeError(e)
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := anthropic.DecodeRequest(body)
	if err != nil {
		return err
	}
	ctx := anthropic.WithNative(r.Context())
	if beta := r.Header.Get("anthropic-beta"); beta != "" {
		ctx = anthropic.WithBeta(ctx, beta)
	}
	resp, stream, err := s.execute(ctx, r, req)
	if err != nil {
		return err
	}
	if stream == nil {
		out, err := anthropic.EncodeResponse(resp)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
		return nil
	}
	streamHeaders(w, "text/event-stream")
	enc := anthropic.NewStreamEncoder(w)
	if err := pump(stream, enc.Encode); err != nil {
		s.log.Debug("stream to client ended early", "err", err)
	}
	if err := enc.Close(); err != nil {
		s.log.Debug("closing client stream", "err", err)
	}
	return nil // the response has started; nothing else can be sent
}

func (s *Server) anthropicCountTokens(w http.ResponseWriter, r *http.Request) error {
	body, err := httpx.ReadBody(w, r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	req, err := anthropic.DecodeCountTokens(body)
	if err != nil {
		return err
	}
	// Counted by the gateway: exact counts need the model's tokenizer,
	// which only some upstreams expose.
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(anthropic.EncodeCountTokens(llm.EstimateInput(req)))
	return nil
}
