package manage

import (
	"context"
	"errors"
	"net/http"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/ratelimit"
	"github.com/omniedge/omni/internal/route/store"
)

// maxBody bounds management request bodies.
const maxBody = 1 << 20

// Mux is where the management routes are registered: an http.ServeMux,
// or an httpx.Mux that also lists them.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Who may call a management route, as the route list names it.
const (
	AuthPublic  = "public"
	AuthSession = "management session"
	AuthIssuer  = "issuing gateway key or management session"
)

// Register adds the management routes to mux. It needs a store.
//
// Every route refuses what a web page of another site could send (see
// origin.go); all but login, logout, setup and the login settings need
// the dashboard login.
func (m *Manager) Register(mux Mux) {
	if m.store == nil {
		return
	}
	open := func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthPublic, noStore(m.checked(h, jsonTypes))))
	}
	guarded := m.Guarded(mux)

	open("POST /api/auth/login", m.login)
	open("POST /api/auth/logout", m.logout)
	open("POST /api/auth/setup", m.setup)
	open("GET /api/settings/require-login", m.getRequireLogin)
	guarded("PUT /api/settings/require-login", m.putRequireLogin)
	guarded("POST /api/auth/password", m.setPassword)
	guarded("PUT /api/settings/password", m.setPassword)

	m.registerKeys(mux, guarded) // keys.go: /api/keys, /api/v1/registered-keys, /v1/quotas/check

	guarded("GET /api/providers", m.listProviders)
	guarded("POST /api/providers", m.createProvider)
	guarded("POST /api/providers/validate", m.validateProvider)
	guarded("GET /api/providers/{id}", m.getProvider)
	guarded("PUT /api/providers/{id}", m.updateProvider)
	guarded("PATCH /api/providers/{id}", m.updateProvider)
	guarded("DELETE /api/providers/{id}", m.deleteProvider)
	guarded("POST /api/providers/{id}/test", m.testProvider)
	guarded("GET /api/providers/{id}/models", m.providerUpstreamModels)
	guarded("POST /api/providers/{id}/credentials", m.addCredential)
	guarded("DELETE /api/providers/{id}/credentials/{cid}", m.deleteCredential)

	guarded("GET /api/provider-models", m.listProviderModels)
	guarded("POST /api/provider-models", m.addProviderModel)
	guarded("PATCH /api/provider-models", m.patchProviderModel)
	guarded("PUT /api/provider-models", m.patchProviderModel)
	guarded("DELETE /api/provider-models", m.deleteProviderModel)

	guarded("GET /api/models/alias", m.listAliases)
	guarded("POST /api/models/alias", m.setAlias)
	guarded("PUT /api/models/alias", m.setAlias)
	guarded("DELETE /api/models/alias", m.deleteAlias)
	guarded("DELETE /api/models/alias/{name...}", m.deleteAlias)
	guarded("GET /api/models/catalog", m.catalog)

	guarded("GET /api/pricing", m.getPricing)
	guarded("PUT /api/pricing", m.putPricing)
	guarded("POST /api/pricing", m.putPricing)
	guarded("DELETE /api/pricing", m.deletePricing)

	guarded("GET /api/combos", m.listCombos)
	guarded("POST /api/combos", m.createCombo)
	guarded("GET /api/combos/{name}", m.getCombo)
	guarded("PUT /api/combos/{name}", m.updateCombo)
	guarded("DELETE /api/combos/{name}", m.deleteCombo)

	guarded("GET /api/model-combo-mappings", m.listMappings)
	guarded("POST /api/model-combo-mappings", m.createMapping)
	guarded("GET /api/model-combo-mappings/{id}", m.getMapping)
	guarded("PUT /api/model-combo-mappings/{id}", m.updateMapping)
	guarded("DELETE /api/model-combo-mappings/{id}", m.deleteMapping)
}

// Guarded returns a function that adds a management route to mux behind
// the same checks as every other management route (the browser checks
// and the login), for the packages that own their own management
// endpoints (resilience, usage, cache …).
func (m *Manager) Guarded(mux Mux) func(pattern string, h httpx.HandlerFunc) {
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthSession, noStore(m.checked(m.guard(h), jsonTypes))))
	}
}

// GuardedUpload is Guarded for the routes whose writes take a file (the
// import of a backup): besides JSON they accept the given body types.
// Register only those routes through it: every body type it accepts is
// one a web page of another site can send without a preflight.
func (m *Manager) GuardedUpload(mux Mux, types ...string) func(pattern string, h httpx.HandlerFunc) {
	types = append(append([]string(nil), jsonTypes...), types...)
	return func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthSession, noStore(m.checked(m.guard(h), types))))
	}
}

// noStore keeps management answers out of caches.
func noStore(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpx.DecodeJSON(w, r, v, maxBody)
}

// storeError maps store errors to HTTP errors; anything else stays a 500.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return httpx.NotFound("%s", err.Error())
	case errors.Is(err, store.ErrConflict):
		return httpx.Conflict("%s", err.Error())
	}
	return err
}

// change finishes a write: on success the table is reloaded and body (if
// any) is written with status.
func (m *Manager) change(w http.ResponseWriter, r *http.Request, status int, body func() any, err error) error {
	if err != nil {
		return storeError(err)
	}
	if err := m.reload(r.Context(), false); err != nil {
		return err
	}
	if body == nil {
		w.WriteHeader(status)
		return nil
	}
	httpx.WriteJSON(w, status, body())
	return nil
}

func readOnly(what string) error {
	return httpx.Errorf(http.StatusConflict, "read_only", "%s is declared in the configuration file; change it there", what)
}

// ---- authentication ----

const cookieName = "auth_token"

// loginLimit bounds password guesses per client IP: 10 at once, then one
// every 6 seconds.
var loginLimit = ratelimit.Limit{Rate: 1.0 / 6, Burst: 10}

func (m *Manager) requireLogin(ctx context.Context) (bool, error) {
	v, ok, err := m.store.Setting(ctx, store.SettingRequireLogin)
	if err != nil {
		return true, err
	}
	return !ok || v != "false", nil
}

func (m *Manager) passwordHash(ctx context.Context) (string, error) {
	v, _, err := m.store.Setting(ctx, store.SettingPasswordHash)
	return v, err
}

// guard admits a management request when login is not required or when
// it carries a live session cookie. Before a password exists (a fresh
// install without INITIAL_PASSWORD) nothing is admitted, from anywhere:
// the password is set with the one-time setup token (setup.go).
func (m *Manager) guard(h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		required, err := m.requireLogin(r.Context())
		if err != nil {
			return err
		}
		if !required {
			return h(w, r)
		}
		hash, err := m.passwordHash(r.Context())
		if err != nil {
			return err
		}
		if hash == "" {
			return errSetupRequired
		}
		ok, err := m.session(r)
		if err != nil {
			return err
		}
		if !ok {
			return httpx.Unauthorized("login required: POST /api/auth/login with the dashboard password")
		}
		return h(w, r)
	}
}

// session reports whether the request carries a valid, live session.
func (m *Manager) session(r *http.Request) (bool, error) {
	sid := m.sessionID(r)
	if sid == "" {
		return false, nil
	}
	return m.store.SessionValid(r.Context(), sid, m.clock.Now())
}

// sessionID returns the session of a correctly signed, unexpired cookie.
func (m *Manager) sessionID(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return ""
	}
	claims, err := m.signer.Verify(c.Value, m.clock.Now())
	if err != nil || claims.Subject != "dashboard" {
		return ""
	}
	return claims.Session
}

func (m *Manager) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}

func (m *Manager) login(w http.ResponseWriter, r *http.Request) error {
	ip := httpx.ClientIP(r, m.opt.TrustProxy)
	d, err := m.limiter.Allow(r.Context(), "route-login:"+ip, loginLimit)
	if err == nil && !d.Allowed {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many login attempts; retry later", RetryAfter: d.RetryAfter}
	}
	var b struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.Password == "" {
		return httpx.BadRequest(`"password" is required`)
	}
	hash, err := m.passwordHash(r.Context())
	if err != nil {
		return err
	}
	if hash == "" {
		return httpx.Errorf(http.StatusConflict, "no_password", "no dashboard password is set yet: "+setupHow)
	}
	if err := auth.CheckPassword(hash, b.Password); err != nil {
		if errors.Is(err, auth.ErrMismatch) {
			m.log.Info("dashboard login failed", "ip", ip)
			return httpx.Unauthorized("wrong password")
		}
		return err
	}
	return m.startSession(w, r)
}

// startSession logs the caller in: a session row and its cookie.
func (m *Manager) startSession(w http.ResponseWriter, r *http.Request) error {
	now := m.clock.Now()
	sid := auth.RandomToken("", 18)
	exp := now.Add(m.opt.SessionTTL)
	if err := m.store.CreateSession(r.Context(), sid, now, exp); err != nil {
		return err
	}
	tok, err := m.signer.Sign(auth.NewClaims("dashboard", sid, now, m.opt.SessionTTL))
	if err != nil {
		return err
	}
	m.setCookie(w, r, tok, int(m.opt.SessionTTL.Seconds()))
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "expires_at": exp.UTC()})
	return nil
}

func (m *Manager) logout(w http.ResponseWriter, r *http.Request) error {
	if sid := m.sessionID(r); sid != "" {
		if err := m.store.DeleteSession(r.Context(), sid); err != nil {
			return err
		}
	}
	m.setCookie(w, r, "", -1)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true})
	return nil
}

func (m *Manager) getRequireLogin(w http.ResponseWriter, r *http.Request) error {
	required, err := m.requireLogin(r.Context())
	if err != nil {
		return err
	}
	hash, err := m.passwordHash(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"requireLogin": required, "hasPassword": hash != "", "setupRequired": hash == ""})
	return nil
}

func (m *Manager) putRequireLogin(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		RequireLogin  *bool `json:"requireLogin"`
		RequireLogin2 *bool `json:"require_login"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	v := b.RequireLogin
	if v == nil {
		v = b.RequireLogin2
	}
	if v == nil {
		return httpx.BadRequest(`"requireLogin" (a boolean) is required`)
	}
	val := "false"
	if *v {
		val = "true"
	}
	if err := m.store.SetSetting(r.Context(), store.SettingRequireLogin, val); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"requireLogin": *v})
	return nil
}

// setPassword sets or changes the dashboard password; changing it needs
// the current one and ends every session.
func (m *Manager) setPassword(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Current  string `json:"current_password"`
		Current2 string `json:"currentPassword"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.Current == "" {
		b.Current = b.Current2
	}
	if len(b.Password) < 8 || len(b.Password) > 256 {
		return httpx.BadRequest(`"password" must be 8 to 256 characters`)
	}
	hash, err := m.passwordHash(r.Context())
	if err != nil {
		return err
	}
	if hash != "" {
		if err := auth.CheckPassword(hash, b.Current); err != nil {
			if errors.Is(err, auth.ErrMismatch) {
				return httpx.Unauthorized(`"current_password" is wrong`)
			}
			return err
		}
	}
	nh, err := auth.HashPassword(b.Password)
	if err != nil {
		return err
	}
	if err := m.store.SetPassword(r.Context(), nh); err != nil {
		return err
	}
	m.setCookie(w, r, "", -1)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "message": "password set; every session has ended, log in again"})
	return nil
}
