// Package admin holds what every package of the gateway's management
// HTTP API under /api/ shares: the browser checks that refuse what a web
// page of another site (or a rebinding one) could send, the dashboard
// session (its signed cookie and the login guard), management keys
// (stored gateway keys with the manage scope, sent as Bearer tokens), the
// caller of each request (ActorFrom), the recording of every management
// change for the audit log (Recorder), the registration helpers that put
// a route behind them (Open, Guarded, GuardedUpload, Scoped),
// FromGatewayHost, and the small helpers handlers share. The resources
// themselves are served by the packages below it (auth, keys, providers,
// models, pricing) and by the feature packages that own their endpoints
// (resilience, usage, cache, backup …).
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
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
	AuthSession = "management session or key (manage)"
)

// AuthScoped is the route list's label of a route registered with
// Scoped(mux, scope).
func AuthScoped(scope string) string { return "management session or key (" + scope + ")" }

// Store is what the guard needs from the route store: the login
// settings, the dashboard sessions and the stored gateway keys.
type Store interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	CreateSession(ctx context.Context, id string, now, expires time.Time) error
	SessionValid(ctx context.Context, id string, now time.Time) (bool, error)
	DeleteSession(ctx context.Context, id string) error
	APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error)
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
	// ConfigKeys are the configuration file's gateway keys: never
	// management keys (refused with 403 rather than 401).
	ConfigKeys []config.Secret
	// Audit records every successful management change; nil: none.
	Audit Recorder
	Log   *slog.Logger // a change the audit log failed to record (default: discarded)
}

// Guard puts management routes behind the browser checks and the
// dashboard login, and keeps the dashboard sessions.
type Guard struct {
	opt    Options
	store  Store
	clock  clock.Clock
	signer *auth.Signer
	hosts  hostSet
	log    *slog.Logger
	// snap serves the in-process GETs of the audit log's before and
	// after documents: the mux the guarded routes are registered on.
	snap atomic.Pointer[http.Handler]
}

// New builds a guard.
func New(opt Options) (*Guard, error) {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 24 * time.Hour
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{opt: opt, store: opt.Store, clock: opt.Clock, hosts: newHostSet(opt.AllowedHosts), log: opt.Log}
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
// the same checks as every other management route: the dashboard login
// (with the browser checks) or a management key (a stored key with the
// manage scope), for the packages that serve management endpoints. Its
// changes are recorded in the audit log.
func (g *Guard) Guarded(mux Mux) func(pattern string, h httpx.HandlerFunc) {
	return g.Scoped(mux, store.ScopeManage)
}

// Scoped is Guarded for routes a key with scope may call instead of a
// management key (the MCP transports: "mcp"): the dashboard login, or
// a stored key holding scope.
func (g *Guard) Scoped(mux Mux, scope string) func(pattern string, h httpx.HandlerFunc) {
	g.remember(mux)
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthScoped(scope), NoStore(g.protect(h, jsonTypes, scope))))
	}
}

// GuardedUpload is Guarded for the routes whose writes take a file (the
// import of a backup): besides JSON they accept the given body types.
// Register only those routes through it: every body type it accepts is
// one a web page of another site can send without a preflight.
func (g *Guard) GuardedUpload(mux Mux, types ...string) func(pattern string, h httpx.HandlerFunc) {
	g.remember(mux)
	types = append(append([]string(nil), jsonTypes...), types...)
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthSession, NoStore(g.protect(h, types, store.ScopeManage))))
	}
}

// Protect is h behind the checks of Guarded (the login with the browser
// checks, or a management key), for a route that admits other callers
// too before falling back to them (the registered keys' issuing keys).
func (g *Guard) Protect(h httpx.HandlerFunc) httpx.HandlerFunc {
	return g.protect(h, jsonTypes, store.ScopeManage)
}

// remember keeps the mux routes are registered on, which serves the
// audit log's in-process GETs.
func (g *Guard) remember(mux Mux) {
	if h, ok := mux.(http.Handler); ok {
		g.snap.CompareAndSwap(nil, &h)
	}
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

// sessionActor admits a management request without a key when login is
// not required ("open") or when it carries a live session cookie. Before
// a password exists (a fresh install without INITIAL_PASSWORD) nothing
// is admitted, from anywhere: the password is set with the one-time
// setup token (route/admin/auth).
func (g *Guard) sessionActor(r *http.Request) (Actor, error) {
	addr := httpx.ClientIP(r, g.opt.TrustProxy)
	required, err := g.RequireLogin(r.Context())
	if err != nil {
		return Actor{}, err
	}
	if !required {
		return Actor{Kind: ActorOpen, Addr: addr}, nil
	}
	hash, err := g.PasswordHash(r.Context())
	if err != nil {
		return Actor{}, err
	}
	if hash == "" {
		return Actor{}, errSetupRequired
	}
	sid := g.sessionID(r)
	ok := false
	if sid != "" {
		if ok, err = g.store.SessionValid(r.Context(), sid, g.clock.Now()); err != nil {
			return Actor{}, err
		}
	}
	if !ok {
		return Actor{}, httpx.Unauthorized("login required: POST /api/auth/login with the dashboard password, or send Authorization: Bearer <key> of a gateway key with the %q scope", store.ScopeManage)
	}
	return Actor{Kind: ActorSession, ID: sessionRef(sid), Name: "dashboard", Addr: addr}, nil
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
