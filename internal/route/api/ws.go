package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/ws"
)

// wsGateway is what the WebSocket transport (route/ws, GET /v1/ws) uses
// of the server: its key check, error shape and chat path.
type wsGateway struct{ s *Server }

var _ ws.Gateway = wsGateway{}

func (s *Server) registerWS() {
	s.mux.Handle("GET /v1/ws", ws.New(wsGateway{s}, ws.DefaultLimits(s.cfg.MaxBody), s.clock, s.log))
}

func (g wsGateway) Keyed(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return g.s.keyed(openAIErrors, h)
}

func (g wsGateway) WriteError(w http.ResponseWriter, e *llm.Error) { openAIErrors(w, e) }

func (g wsGateway) KeyID(ctx context.Context) string { return KeyIDFrom(ctx) }

// Describe takes the handshake's cache headers for every request of the
// socket; not its Idempotency-Key, which would replay one answer to all
// of them.
func (g wsGateway) Describe(ctx context.Context, r *http.Request) pipeline.Origin {
	o := origin(ctx, r)
	switch {
	case strings.EqualFold(headerValue(r.Header, canonicalNoCache), "true"):
		o.Cache = pipeline.CacheBypass
	case strings.EqualFold(headerValue(r.Header, canonicalCache), "true"):
		o.Cache = pipeline.CacheWanted
	}
	return o
}

func (g wsGateway) Chat(ctx context.Context, o *pipeline.Origin, req *llm.Request) (pipeline.Answer, error) {
	return g.s.engine.Execute(openai.WithNative(ctx), o, req)
}

func (g wsGateway) Error(r *http.Request, err error) *llm.Error { return g.s.toLLMError(r, err) }
