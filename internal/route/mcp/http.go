package mcp

import (
	"net/http"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// Register adds the status, tool list and audit reads through add (the
// management API's guarded registration) and the two HTTP transports
// through transports (the dashboard login, or a key holding the mcp
// scope).
func (s *Server) Register(add, transports feature.Registrar) {
	add("GET /api/mcp/status", s.getStatus)
	add("GET /api/mcp/tools", s.getTools)
	add("GET /api/mcp/audit", s.getAudit)
	add("GET /api/mcp/audit/stats", s.getAuditStats)
	sse := s.transport(TransportSSE, s.sse)
	transports("GET /api/mcp/sse", sse)
	transports("POST /api/mcp/sse", sse)
	stream := s.transport(TransportStreamable, s.stream)
	transports("GET /api/mcp/stream", stream)
	transports("POST /api/mcp/stream", stream)
	transports("DELETE /api/mcp/stream", stream)
}

// config is the stored MCP settings: on or off, and the transport.
func (s *Server) config(r *http.Request) (enabled bool, transport string, err error) {
	transport = TransportStreamable
	if s.opt.Settings == nil {
		return false, transport, nil
	}
	v, _, err := s.opt.Settings.Setting(r.Context(), SettingEnabled)
	if err != nil {
		return false, transport, err
	}
	t, ok, err := s.opt.Settings.Setting(r.Context(), SettingTransport)
	if err != nil {
		return false, transport, err
	}
	if ok && t != "" {
		transport = t
	}
	return v == "true", transport, nil
}

// transport serves one HTTP transport while the stored settings serve it:
// 503 while MCP is off, 400 while the other transport is configured, 503
// when a new session would pass the session cap.
func (s *Server) transport(name string, h http.Handler) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		enabled, configured, err := s.config(r)
		if err != nil {
			return err
		}
		if !enabled {
			return httpx.Errorf(http.StatusServiceUnavailable, "mcp_disabled",
				"the MCP server is off: turn it on with the setting mcpEnabled (PATCH /api/settings)")
		}
		if configured != name {
			return httpx.Errorf(http.StatusBadRequest, "mcp_transport_mismatch",
				"this gateway serves MCP over %s, not %s: use %s", configured, name, endpointOf(configured))
		}
		newSession := (name == TransportSSE && r.Method == http.MethodGet) ||
			(name == TransportStreamable && r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == "")
		if newSession && s.liveSessions() >= s.opt.MaxSessions {
			w.Header().Set("Retry-After", "30")
			return httpx.Errorf(http.StatusServiceUnavailable, "mcp_sessions_full",
				"the MCP server holds its most sessions (%d): close one or retry later", s.opt.MaxSessions)
		}
		c := s.opt.Caller(r)
		id := r.Header.Get("Mcp-Session-Id")
		if name == TransportSSE {
			id = r.URL.Query().Get("sessionid")
		}
		if id != "" && s.ownedByOther(id, c) {
			// Another caller's session is answered as one that does not exist.
			return httpx.NotFound("no such MCP session")
		}
		if name == TransportSSE && r.Method == http.MethodGet {
			var done func()
			r, done = s.openStream(r)
			defer done()
			sw := &sessionSniffer{ResponseWriter: w}
			defer func() {
				if sw.id != "" {
					s.unbind(sw.id)
				}
			}()
			sw.found = func(id string) { s.bind(id, c) }
			w = sw
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

// sessionSniffer passes an SSE stream through and reads the session id
// its first event (the message endpoint, "…?sessionid=ID") announces.
type sessionSniffer struct {
	http.ResponseWriter
	buf   []byte
	id    string
	done  bool
	found func(id string)
}

func (w *sessionSniffer) Write(p []byte) (int, error) {
	if !w.done {
		w.buf = append(w.buf, p...)
		if i := strings.Index(string(w.buf), "sessionid="); i >= 0 {
			rest := string(w.buf[i+len("sessionid="):])
			if j := strings.IndexAny(rest, "&\r\n"); j >= 0 {
				w.id, w.done, w.buf = rest[:j], true, nil
				w.found(w.id)
			}
		}
		if len(w.buf) > 4096 {
			w.done, w.buf = true, nil
		}
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush the stream.
func (w *sessionSniffer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *sessionSniffer) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func endpointOf(transport string) string {
	if transport == TransportSSE {
		return "/api/mcp/sse"
	}
	return "/api/mcp/stream"
}

type statusBody struct {
	Online          bool        `json:"online"`
	Enabled         bool        `json:"enabled"`
	Transport       string      `json:"transport"`
	Endpoint        string      `json:"endpoint"`
	Heartbeat       time.Time   `json:"heartbeat"`
	ActiveSessions  int         `json:"activeSessions"`
	MaxSessions     int         `json:"maxSessions"`
	Tools           int         `json:"tools"`
	LastCallAt      *time.Time  `json:"lastCallAt"`
	Calls24h        int64       `json:"calls24h"`
	SuccessRate24h  float64     `json:"successRate24h"`
	TopTools        []ToolCount `json:"topTools"`
	MaxMessageBytes int64       `json:"maxMessageBytes"`
	IdleTimeoutSec  int64       `json:"idleTimeoutSeconds"`
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	enabled, transport, err := s.config(r)
	if err != nil {
		return err
	}
	now := s.opt.Clock.Now().UTC()
	st, err := s.audit.stats(r.Context(), now.Add(-24*time.Hour))
	if err != nil {
		return err
	}
	last := st.LastCallAt
	if last == nil {
		all, err := s.audit.stats(r.Context(), time.Time{})
		if err != nil {
			return err
		}
		last = all.LastCallAt
	}
	httpx.WriteJSON(w, http.StatusOK, statusBody{Online: enabled, Enabled: enabled, Transport: transport, Endpoint: endpointOf(transport),
		Heartbeat: now, ActiveSessions: s.liveSessions(), MaxSessions: s.opt.MaxSessions, Tools: len(catalog), LastCallAt: last,
		Calls24h: st.Total, SuccessRate24h: st.SuccessRate, TopTools: st.TopTools, MaxMessageBytes: s.opt.MaxMessage,
		IdleTimeoutSec: int64(s.opt.IdleTimeout / time.Second)})
	return nil
}

func (s *Server) getTools(w http.ResponseWriter, _ *http.Request) error {
	tools := s.Tools()
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"tools": tools, "count": len(tools)})
	return nil
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := AuditFilter{Tool: q.Get("tool"), APIKeyID: q.Get("apiKeyId")}
	var err error
	if f.Limit, err = httpx.QueryInt(r, "limit", 50, MaxAuditLimit); err != nil {
		return err
	}
	if f.Limit == 0 {
		return httpx.BadRequest("limit must be an integer from 1 to %d", MaxAuditLimit)
	}
	if f.Offset, err = httpx.QueryInt(r, "offset", 0, maxAuditOffset); err != nil {
		return err
	}
	if len(f.Tool) > 128 || len(f.APIKeyID) > 128 {
		return httpx.BadRequest("tool and apiKeyId are at most 128 characters")
	}
	switch v := q.Get("success"); v {
	case "":
	case "true", "false":
		b := v == "true"
		f.Success = &b
	default:
		return httpx.BadRequest("success must be true or false")
	}
	rows, total, err := s.audit.list(r.Context(), f)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"entries": rows, "total": total, "limit": f.Limit, "offset": f.Offset})
	return nil
}

func (s *Server) getAuditStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.audit.stats(r.Context(), time.Time{})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, st)
	return nil
}
