package api

import (
	"context"
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
	return s.Body(min(maxBody, s.cfg.MaxBody), func(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return &llm.Error{Status: http.StatusUnsupportedMediaType, Type: llm.ErrInvalidRequest, Code: "unsupported_media_type",
				Message: "the request body must be JSON (Content-Type: application/json)"}
		}
		body, err := httpx.ReadBody(w, r, min(maxBody, s.cfg.MaxBody))
		if err != nil {
			return err
		}
		return h(w, r, body, run)
	})
}

// Body implements feature.Operations: an endpoint whose handler reads
// its own body (a multipart upload streamed on, a GET), limited to
// maxBody bytes.
func (s *Server) Body(maxBody int64, h feature.BodyHandler) http.Handler {
	inner := s.keyed(openAIErrors, func(w http.ResponseWriter, r *http.Request) error {
		if maxBody > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
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
		return h(w, r, run)
	})
	return httpx.WithAuth(AuthGatewayKey, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.handled()
		inner.ServeHTTP(w, r)
	}))
}

// KeyID implements feature.Operations: the id of the gateway key the
// request of ctx was authenticated with.
func (s *Server) KeyID(ctx context.Context) string { return KeyIDFrom(ctx) }
