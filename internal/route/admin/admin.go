// Package admin holds what every package of the gateway's management
// HTTP API under /api/ shares: the browser checks that refuse what a web
// page of another site (or a rebinding one) could send, the dashboard
// session (its signed cookie and the login guard), the registration
// helpers that put a route behind them (Open, Guarded, GuardedUpload),
// FromGatewayHost, and the small helpers handlers share. The resources
// themselves are served by the packages below it (auth, keys, providers,
// models, pricing) and by the feature packages that own their endpoints
// (resilience, usage, cache, backup …).
package admin

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// Mux is where the management routes are registered: an http.ServeMux,
// or an httpx.Mux that also lists them.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Who may call a management route, as the route list names it.
const (
	AuthPublic  = "public"
	AuthSession = "management session"
)

// Store is what the guard needs from the route store: the login
// settings and the dashboard sessions.
type Store interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	CreateSession(ctx context.Context, id string, now, expires time.Time) error
	SessionValid(ctx context.Context, id string, now time.Time) (bool, error)
	DeleteSession(ctx context.Context, id string) error
}

// Options configure a Guard.
type Options struct {
	Store     Store  // nil: no management API; FromGatewayHost still works
	MasterKey []byte // signs dashboard sessions (required with Store)
	// TrustProxy are the proxies whose X-Forwarded-For gives the client
	// IP and whose X-Forwarded-Proto gives its scheme.
	TrustProxy []netip.Prefix
	// AllowedHosts are the Host names (HOST or HOST:PORT; "*": any) the
	// management API answers under besides the loopback names.
	AllowedHosts []string
	SessionTTL   time.Duration // dashboard session lifetime (default 24h)
	Clock        clock.Clock
}

// Guard puts management routes behind the browser checks and the
// dashboard login, and keeps the dashboard sessions.
type Guard struct {
	opt    Options
	store  Store
	clock  clock.Clock
	signer *auth.Signer
	hosts  hostSet
}

// New builds a guard.
func New(opt Options) (*Guard, error) {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 24 * time.Hour
	}
	g := &Guard{opt: opt, store: opt.Store, clock: opt.Clock, hosts: newHostSet(opt.AllowedHosts)}
	if opt.Store != nil {
		if len(opt.MasterKey) < 32 {
			return nil, errors.New("admin: a 32-byte master key is required with a store")
		}
		s, err := auth.NewSigner(auth.DeriveKey(opt.MasterKey, "route dashboard session"), "omniroute", "omniroute-dashboard")
		if err != nil {
			return nil, err
		}
		g.signer = s
	}
	return g, nil
}

// TrustProxy are the proxies whose X-Forwarded-For gives the client IP.
func (g *Guard) TrustProxy() []netip.Prefix { return g.opt.TrustProxy }

// Open returns a function that adds a route anyone may call to mux,
// behind the browser checks only (login, logout, setup …).
func (g *Guard) Open(mux Mux) func(pattern string, h httpx.HandlerFunc) {
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthPublic, NoStore(g.checked(h, jsonTypes))))
	}
}

// Guarded returns a function that adds a management route to mux behind
// the same checks as every other management route (the browser checks
// and the login), for the packages that serve management endpoints.
func (g *Guard) Guarded(mux Mux) func(pattern string, h httpx.HandlerFunc) {
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthSession, NoStore(g.Protect(h))))
	}
}

// GuardedUpload is Guarded for the routes whose writes take a file (the
// import of a backup): besides JSON they accept the given body types.
// Register only those routes through it: every body type it accepts is
// one a web page of another site can send without a preflight.
func (g *Guard) GuardedUpload(mux Mux, types ...string) func(pattern string, h httpx.HandlerFunc) {
	types = append(append([]string(nil), jsonTypes...), types...)
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthSession, NoStore(g.checked(g.guard(h), types))))
	}
}

// Protect is h behind the browser checks (writes take JSON) and the
// login, for a route that admits other callers too before falling back
// to them (the registered keys' issuing keys).
func (g *Guard) Protect(h httpx.HandlerFunc) httpx.HandlerFunc {
	return g.checked(g.guard(h), jsonTypes)
}

// NoStore keeps management answers out of caches.
func NoStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// ---- the dashboard login ----

const cookieName = "auth_token"

// SetupHow tells how a gateway without a dashboard password is set up.
const SetupHow = "POST /api/auth/setup {\"token\", \"password\"} with the one-time setup token printed in the gateway's log at start, " +
	"or start the gateway with INITIAL_PASSWORD (or OMNI_INITIAL_PASSWORD)"

var errSetupRequired = httpx.Errorf(http.StatusUnauthorized, "setup_required", "the gateway is not set up: no dashboard password exists. "+SetupHow)

// RequireLogin reports whether management requests need the login (the
// default) or not.
func (g *Guard) RequireLogin(ctx context.Context) (bool, error) {
	v, ok, err := g.store.Setting(ctx, store.SettingRequireLogin)
	if err != nil {
		return true, err
	}
	return !ok || v != "false", nil
}

// PasswordHash is the stored dashboard password hash; "" before one is
// set.
func (g *Guard) PasswordHash(ctx context.Context) (string, error) {
	v, _, err := g.store.Setting(ctx, store.SettingPasswordHash)
	return v, err
}

// guard admits a management request when login is not required or when
// it carries a live session cookie. Before a password exists (a fresh
// install without INITIAL_PASSWORD) nothing is admitted, from anywhere:
// the password is set with the one-time setup token (route/admin/auth).
func (g *Guard) guard(h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		required, err := g.RequireLogin(r.Context())
		if err != nil {
			return err
		}
		if !required {
			return h(w, r)
		}
		hash, err := g.PasswordHash(r.Context())
		if err != nil {
			return err
		}
		if hash == "" {
			return errSetupRequired
		}
		ok, err := g.session(r)
		if err != nil {
			return err
		}
		if !ok {
			return httpx.Unauthorized("login required: POST /api/auth/login with the dashboard password")
		}
		return h(w, r)
	}
}

// LoggedIn reports whether r carries a valid, live dashboard session.
func (g *Guard) LoggedIn(r *http.Request) (bool, error) { return g.session(r) }

// session reports whether the request carries a valid, live session.
func (g *Guard) session(r *http.Request) (bool, error) {
	sid := g.sessionID(r)
	if sid == "" {
		return false, nil
	}
	return g.store.SessionValid(r.Context(), sid, g.clock.Now())
}

// sessionID returns the session of a correctly signed, unexpired cookie.
func (g *Guard) sessionID(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return ""
	}
	claims, err := g.signer.Verify(c.Value, g.clock.Now())
	if err != nil || claims.Subject != "dashboard" {
		return ""
	}
	return claims.Session
}

func (g *Guard) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}

// ClearCookie tells the browser to drop its session cookie.
func (g *Guard) ClearCookie(w http.ResponseWriter, r *http.Request) { g.setCookie(w, r, "", -1) }

// StartSession logs the caller in: a session row and its cookie, and the
// answer {"ok", "expires_at"}.
func (g *Guard) StartSession(w http.ResponseWriter, r *http.Request) error {
	now := g.clock.Now()
	sid := auth.RandomToken("", 18)
	exp := now.Add(g.opt.SessionTTL)
	if err := g.store.CreateSession(r.Context(), sid, now, exp); err != nil {
		return err
	}
	tok, err := g.signer.Sign(auth.NewClaims("dashboard", sid, now, g.opt.SessionTTL))
	if err != nil {
		return err
	}
	g.setCookie(w, r, tok, int(g.opt.SessionTTL.Seconds()))
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "expires_at": exp.UTC()})
	return nil
}

// EndSession logs the caller out: its session (if any) ends and the
// cookie is dropped.
func (g *Guard) EndSession(w http.ResponseWriter, r *http.Request) error {
	if sid := g.sessionID(r); sid != "" {
		if err := g.store.DeleteSession(r.Context(), sid); err != nil {
			return err
		}
	}
	g.ClearCookie(w, r)
	return nil
}
