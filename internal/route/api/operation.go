package api

import (
	"mime"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
)

var _ feature.Operations = (*Server)(nil)

// JSON implements feature.Operations: the endpoints of the modalities
// beyond chat (rerank, moderations …), whose modules build them over the
// gateway's key check, engine and error shape.
func (s *Server) JSON(maxBody int64, h feature.OpHandler) http.Handler {
	inner := s.keyed(openAIErrors, func(w http.ResponseWriter, r *http.Request) error {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return &llm.Error{Status: http.StatusUnsupportedMediaType, Type: llm.ErrInvalidRequest, Code: "unsupported_media_type",
				Message: "the request body must be JSON (Content-Type: application/json)"}
		}
		body, err := httpx.ReadBody(w, r, min(maxBody, s.cfg.MaxBody))
		if err != nil {
			return err
		}
		ctx := r.Context()
		o := origin(ctx, r)
		run := func(op *pipeline.Op) (*pipeline.OpAnswer, error) {
			a, err := s.engine.Do(ctx, &o, op)
			if err == nil {
				w.Header()[canonicalModel] = []string{a.Model}
			}
			return a, err
		}
		return h(w, r, body, run)
	})
	return httpx.WithAuth(AuthGatewayKey, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.handled()
		inner.ServeHTTP(w, r)
	}))
}
