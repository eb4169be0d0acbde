package api

import (
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
)

// The dashboard's session: POST /api/v2/auth/dashboard/login checks an
// email and password and sets SessionCookie (HttpOnly, SameSite=Strict,
// Secure when the request came over TLS), which every authenticated
// route accepts in place of a bearer token. Requests carrying it are
// checked against other sites' pages: a cross-site Sec-Fetch-Site or an
// Origin other than the request's own is refused, writes must name their
// Origin, and POST, PUT and PATCH must carry Content-Type:
// application/json (which another site's page cannot send without a
// preflight this API never grants). POST /api/v2/auth/dashboard/logout
// revokes the login session and clears the cookie.

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "omni_edge_session"

// DashboardLoginRequest is the body of POST /api/v2/auth/dashboard/login.
type DashboardLoginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) secure(r *http.Request) bool {
	return strings.HasPrefix(s.baseURL(r), "https://")
}

// setSessionCookie sets (or, for "", clears) the session cookie. It is
// a browser-session cookie: the server ends the login session itself
// (its sliding expiry, logout, revocation), and a closed browser forgets
// it.
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, value string) {
	c := &http.Cookie{Name: SessionCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)}
	if value == "" {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
	// A companion cookie without the secret tells the page a session
	// may exist, so a logged-out page shows its login form without a
	// refused request.
	m := &http.Cookie{Name: SessionCookie + "_present", Value: "1", Path: "/", SameSite: http.SameSiteStrictMode, Secure: c.Secure, MaxAge: c.MaxAge}
	http.SetCookie(w, m)
}

func (s *Server) dashboardLogin(w http.ResponseWriter, r *http.Request) error {
	if err := s.sameSite(r, true); err != nil {
		return err
	}
	var req DashboardLoginRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if s.limiter != nil {
		if err := s.limit(r.Context(), "pw:"+ipam.SourceString(httpx.ClientIP(r, s.cfg.TrustProxy)), passwordLimit, "client IP"); err != nil {
			return err
		}
	}
	cookie, _, err := s.svc.DashboardLogin(r.Context(), req.Email, req.Password, s.client(r))
	if err != nil {
		return toHTTP(err)
	}
	s.setSessionCookie(w, r, cookie)
	p, err := s.svc.AuthenticateDashboard(r.Context(), cookie)
	if err != nil {
		return toHTTP(err)
	}
	return s.me(w, r, p)
}

func (s *Server) dashboardLogout(w http.ResponseWriter, r *http.Request) error {
	if err := s.sameSite(r, true); err != nil {
		return err
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := s.svc.DashboardLogout(r.Context(), c.Value); err != nil {
			return toHTTP(err)
		}
	}
	s.setSessionCookie(w, r, "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cookiePrincipal authenticates a request by the dashboard cookie,
// refusing what another site's page could have sent.
func (s *Server) cookiePrincipal(r *http.Request, value string) (control.Principal, error) {
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if err := s.sameSite(r, write); err != nil {
		return control.Principal{}, err
	}
	p, err := s.svc.AuthenticateDashboard(r.Context(), value)
	if err != nil {
		return control.Principal{}, toHTTP(err)
	}
	return p, nil
}

// sameSite refuses a request another site's page may have made: a
// cross-site Sec-Fetch-Site, an Origin that is not this API's own (for
// writes, a missing one too), and a POST, PUT or PATCH without a JSON
// body type.
func (s *Server) sameSite(r *http.Request, write bool) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return httpx.Forbidden("dashboard requests from another site's pages are refused (Sec-Fetch-Site: %s)", site)
	}
	o := r.Header.Get("Origin")
	if o == "" && write {
		return httpx.Forbidden("dashboard writes must carry an Origin header (browsers send it)")
	}
	if o != "" && !s.ownOrigin(r, o) {
		return httpx.Forbidden("dashboard requests from another origin's pages are refused (Origin: %s)", o)
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			return httpx.Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "dashboard %s requests need Content-Type: application/json", r.Method)
		}
	}
	return nil
}

// ownOrigin reports whether origin is this API's: the configured public
// URL's origin, or the request's own host with its scheme when that is
// known (TLS on the listener, a trusted proxy's X-Forwarded-Proto). A
// plain listener may sit behind a proxy that terminates TLS without
// saying so, so there either scheme is taken.
func (s *Server) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	want, err := url.Parse(s.baseURL(r))
	if err != nil || !strings.EqualFold(u.Host, want.Host) {
		return false
	}
	known := s.cfg.PublicURL != "" || r.TLS != nil || (httpx.TrustedPeer(r, s.cfg.TrustProxy) && r.Header.Get("X-Forwarded-Proto") != "")
	return !known || strings.EqualFold(u.Scheme, want.Scheme)
}
