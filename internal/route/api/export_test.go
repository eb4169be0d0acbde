package api

import "net/http"

// WSLimits are the caps of the WebSocket endpoint, for tests that run it
// under small ones.
type WSLimits = wsLimits

// DefaultWSLimits are the caps GET /v1/ws is served with.
func DefaultWSLimits() WSLimits { return defaultWSLimits(32 << 20) }

// WSHandler serves GET /v1/ws under l.
func (s *Server) WSHandler(l WSLimits) http.Handler { return s.wsHandler(l) }
