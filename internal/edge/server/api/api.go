// Package api is the HTTP transport of the OmniEdge control plane: it maps
// the routes of the client API (docs/edge-api.md) onto control.Service, turns
// domain errors into JSON errors with the spec's status codes, enforces
// per-token and per-IP rate limits, and serves the browser login page and
// the login-session WebSocket. It holds no state of its own.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/ratelimit"
)

// Config tunes the transport.
type Config struct {
	RateToken float64 // requests/s per access token; 0 off
	RateIP    float64 // requests/s per client IP; 0 off
	// TrustProxy lists the proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (httpx.ClientIP).
	TrustProxy []netip.Prefix
	// PublicURL is the external base URL used in auth_url; when empty the
	// request's own scheme and host are used.
	PublicURL string
	// NucleusHost is the HOST:PORT the join response advertises for the
	// built-in nucleus; when empty, the request's host with NucleusPort.
	NucleusHost string
	NucleusPort string
	NucleusName string
	// NucleusPublicKey is the built-in nucleus's static public key
	// (standard base64), which join answers hand to devices.
	NucleusPublicKey string
	// SocketsPerIP caps the login-session WebSockets open per client IP
	// (0: the default of 32).
	SocketsPerIP int
}

// Server serves the control-plane API.
type Server struct {
	svc     *control.Service
	log     *slog.Logger
	limiter ratelimit.Limiter
	cfg     Config
	mux     *http.ServeMux
	sockets ipCounter
	waits   waitCounter // long polls of names (names.go)
}

// New builds the API around svc. limiter may be nil when both rates are 0.
func New(svc *control.Service, limiter ratelimit.Limiter, cfg Config, log *slog.Logger) *Server {
	if cfg.SocketsPerIP <= 0 {
		cfg.SocketsPerIP = 32
	}
	s := &Server{svc: svc, log: log, limiter: limiter, cfg: cfg, mux: http.NewServeMux(), sockets: ipCounter{m: map[string]int{}}}
	s.routes()
	return s
}

// Handles reports whether r is for one of the API's routes (under /api/,
// or the browser login page and socket); the dashboard answers the rest.
func (s *Server) Handles(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		return true
	}
	for _, m := range []string{r.Method, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			return true // the API's route (another method: its 405)
		}
	}
	return false
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	pub := func(pattern string, h httpx.HandlerFunc) { s.mux.Handle(pattern, s.ipLimited(h)) }
	authed := func(pattern string, h func(http.ResponseWriter, *http.Request, control.Principal) error) {
		s.mux.Handle(pattern, s.ipLimited(s.authenticated(h)))
	}

	pub("POST /api/v2/auth/login/security-key", s.loginSecurityKey)
	pub("POST /api/v2/auth/refresh", s.refresh)
	pub("POST /api/v2/auth/logout", s.logout)
	pub("GET /api/v2/auth/login/session", s.startSession)
	pub("GET /api/v1/auth/login/session", s.startSession)
	pub("GET /login/session/{uuid}", s.sessionSocket)
	pub("GET /api/v2/login/session/{uuid}", s.sessionSocket)
	pub("GET /api/v1/login/session/{uuid}", s.sessionSocket)
	pub("POST /api/v2/auth/dashboard/login", s.dashboardLogin)
	pub("POST /api/v2/auth/dashboard/logout", s.dashboardLogout)
	pub("GET /login", s.loginPage)
	pub("POST /login", s.loginSubmit)
	pub("POST /login/approve", s.loginApprove)

	authed("GET /api/v2/users/me", s.me)
	authed("GET /api/v2/security-keys", s.listKeys)
	authed("POST /api/v2/security-keys", s.createKey)
	authed("DELETE /api/v2/security-keys/{id}", s.revokeKey)
	authed("GET /api/v2/sessions", s.listSessions)
	authed("DELETE /api/v2/sessions/{id}", s.revokeSession)

	authed("POST /api/v2/devices", s.registerDevice)
	authed("GET /api/v2/devices", s.listDevices)
	authed("POST /api/v2/devices/heartbeat", s.heartbeat)
	authed("GET /api/v2/devices/{id}", s.getDevice)
	authed("PUT /api/v2/devices/{id}", s.renameDevice)
	authed("PATCH /api/v2/devices/{id}", s.renameDevice)
	authed("DELETE /api/v2/devices/{id}", s.deleteDevice)
	authed("POST /api/v2/devices/{id}/expire", s.expireDeviceKey)

	authed("POST /api/v2/virtual-networks", s.createNetwork)
	authed("GET /api/v2/virtual-networks", s.listNetworks)
	authed("GET /api/v2/virtual-networks/{vn}", s.getNetwork)
	authed("PUT /api/v2/virtual-networks/{vn}", s.updateNetwork)
	authed("PATCH /api/v2/virtual-networks/{vn}", s.updateNetwork)
	authed("DELETE /api/v2/virtual-networks/{vn}", s.deleteNetwork)
	authed("GET /api/v2/virtual-networks/{vn}/devices", s.listMembers)
	authed("GET /api/v2/virtual-networks/{vn}/dns", s.names)
	authed("GET /api/v2/virtual-networks/{vn}/map", s.netMap)
	authed("GET /api/v2/virtual-networks/{vn}/policy", s.getPolicy)
	authed("PUT /api/v2/virtual-networks/{vn}/policy", s.putPolicy)
	authed("POST /api/v2/virtual-networks/{vn}/policy/check", s.checkPolicy)
	authed("GET /api/v2/virtual-networks/{vn}/devices/{dev}/routes", s.memberRoutes)
	authed("PUT /api/v2/virtual-networks/{vn}/devices/{dev}/routes", s.approveRoutes)
	authed("GET /api/v2/virtual-networks/{vn}/devices/{dev}", s.membership)
	authed("POST /api/v2/virtual-networks/{vn}/devices/{dev}", s.join)
	authed("DELETE /api/v2/virtual-networks/{vn}/devices/{dev}", s.leave)
	authed("PUT /api/v2/virtual-networks/{vn}/devices/{dev}", s.updateMember)
	authed("PATCH /api/v2/virtual-networks/{vn}/devices/{dev}", s.updateMember)

	authed("GET /api/v2/user-servers", s.listServers)
	authed("POST /api/v2/user-servers", s.createServer)
	authed("GET /api/v2/user-servers/{id}", s.getServer)
	authed("PUT /api/v2/user-servers/{id}", s.updateServer)
	authed("PATCH /api/v2/user-servers/{id}", s.updateServer)
	authed("DELETE /api/v2/user-servers/{id}", s.deleteServer)
	authed("GET /api/v2/user-servers/{id}/networks", s.servedNetworks)

	s.mux.Handle("/api/", s.ipLimited(httpx.HandlerFunc(s.noRoute)))
}

// noRoute answers paths under /api/ that no route matched: 405 with Allow
// when the path exists for other methods, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return httpx.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
	}
	return httpx.NotFound("no route for %s %s", r.Method, r.URL.Path)
}

// ---- middleware ----

func (s *Server) ipLimited(h http.Handler) http.Handler {
	if s.cfg.RateIP <= 0 || s.limiter == nil {
		return h
	}
	lim := ratelimit.Limit{Rate: s.cfg.RateIP, Burst: burst(s.cfg.RateIP)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.limit(r.Context(), "ip:"+ipam.SourceString(httpx.ClientIP(r, s.cfg.TrustProxy)), lim, "client IP"); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func burst(rate float64) int { return max(1, int(rate*2)) }

func (s *Server) limit(ctx context.Context, key string, lim ratelimit.Limit, what string) error {
	d, err := s.limiter.Allow(ctx, key, lim)
	if err != nil {
		// Fail open: a limiter outage must not take the API down.
		s.log.Warn("rate limiter unavailable", "err", err)
		return nil
	}
	if !d.Allowed {
		e := httpx.Errorf(http.StatusTooManyRequests, "rate_limited", "too many requests for this %s; retry later", what)
		e.RetryAfter = d.RetryAfter
		return e
	}
	return nil
}

func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request, control.Principal) error) http.Handler {
	var lim ratelimit.Limit
	if s.cfg.RateToken > 0 {
		lim = ratelimit.Limit{Rate: s.cfg.RateToken, Burst: burst(s.cfg.RateToken)}
	}
	return httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var p control.Principal
		if tok, ok := bearer(r); ok {
			var err error
			if p, err = s.svc.Authenticate(tok); err != nil {
				return toHTTP(err)
			}
		} else if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
			if p, err = s.cookiePrincipal(r, c.Value); err != nil {
				return err
			}
		} else {
			return httpx.Unauthorized("missing bearer token: send Authorization: Bearer <token>")
		}
		if lim.Rate > 0 && s.limiter != nil {
			key := p.Family
			if key == "" {
				key = p.UserID
			}
			if err := s.limit(r.Context(), "tok:"+key, lim, "token"); err != nil {
				return err
			}
		}
		return h(w, r, p)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != ""
}

// toHTTP maps domain errors to HTTP errors; anything else is a 500.
func toHTTP(err error) error {
	var de *control.Error
	if !errors.As(err, &de) {
		return err
	}
	switch de.Kind {
	case control.KindInvalid:
		return httpx.Errorf(http.StatusBadRequest, "invalid_request", "%s", de.Msg)
	case control.KindLimit:
		return httpx.Errorf(http.StatusBadRequest, "limit_reached", "%s", de.Msg)
	case control.KindUnauthorized:
		return httpx.Errorf(http.StatusUnauthorized, "unauthorized", "%s", de.Msg)
	case control.KindForbidden:
		return httpx.Errorf(http.StatusForbidden, "forbidden", "%s", de.Msg)
	case control.KindNotFound:
		return httpx.Errorf(http.StatusNotFound, "not_found", "%s", de.Msg)
	case control.KindConflict:
		return httpx.Errorf(http.StatusConflict, "conflict", "%s", de.Msg)
	case control.KindTooMany:
		return httpx.Errorf(http.StatusTooManyRequests, "too_many_sessions", "%s", de.Msg)
	}
	return err
}

// baseURL is the external base URL of this API for links.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil || (httpx.TrustedPeer(r, s.cfg.TrustProxy) && r.Header.Get("X-Forwarded-Proto") == "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// nucleusHost is the built-in nucleus address for a join response.
func (s *Server) nucleusHost(r *http.Request) string {
	if s.cfg.NucleusHost != "" {
		return s.cfg.NucleusHost
	}
	host := r.Host
	if s.cfg.PublicURL != "" {
		if u, err := url.Parse(s.cfg.PublicURL); err == nil {
			host = u.Host
		}
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return net.JoinHostPort(host, s.cfg.NucleusPort)
}
