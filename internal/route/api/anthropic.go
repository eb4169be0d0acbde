package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/llm"
)

func anthropicErrors(w http.ResponseWriter, e *llm.Error) { writeError(w, e, anthropic.EncodeError) }

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
	resp, stream, err := s.execute(ctx, w, r, req)
	if err != nil {
		return err
	}
	return s.reply(w, resp, stream, anthropic.EncodeResponse, func(w http.ResponseWriter) streamEncoder {
		return anthropic.NewStreamEncoder(w)
	})
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
	ctx := anthropic.WithNative(r.Context())
	if beta := r.Header.Get("anthropic-beta"); beta != "" {
		ctx = anthropic.WithBeta(ctx, beta)
	}
	n, err := s.countTokens(ctx, w, r, req)
	if err != nil {
		return err
	}
	writeJSONBody(w, anthropic.EncodeCountTokens(n))
	return nil
}
