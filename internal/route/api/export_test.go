package api

import (
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/ws"
)

// WSLimits are the caps of the WebSocket endpoint, for tests that run it
// under small ones.
type WSLimits = ws.Limits

// DefaultWSLimits are the caps GET /v1/ws is served with.
func DefaultWSLimits() WSLimits { return ws.DefaultLimits(32 << 20) }

// WSHandler serves GET /v1/ws under l.
func (s *Server) WSHandler(l WSLimits) http.Handler { return ws.New(wsGateway{s}, l, s.clock, s.log) }

// SetProgressInterval sets the heartbeat period of X-OmniRoute-Progress.
func (s *Server) SetProgressInterval(d time.Duration) { s.progressEvery = d }
