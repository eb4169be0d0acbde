// Package auth serves the dashboard's account under /api/auth and
// /api/settings: login and logout, the one-time setup of the first
// password, password changes and whether the login is required. At start
// it stores the initial password or prints a setup token (Prepare). The
// session cookie and the guard every management route passes are the
// shared route/admin's.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/ratelimit"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the account endpoints need from the route store.
type Store interface {
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
	SetSettingIfAbsent(ctx context.Context, key, value string) (bool, error)
	CompareAndSwapSetting(ctx context.Context, key, old, value string) (bool, error)
	SetPassword(ctx context.Context, hash string) error
	SetFirstPassword(ctx context.Context, hash string) (bool, error)
}

// Options configure the account endpoints.
type Options struct {
	Store           Store        // required
	Guard           *admin.Guard // required: sessions and the login guard
	InitialPassword string       // dashboard password set at first start when none is stored
	Clock           clock.Clock
	Log             *slog.Logger
}

// Account serves the dashboard's account endpoints.
type Account struct {
	opt     Options
	store   Store
	guard   *admin.Guard
	limiter ratelimit.Limiter
	log     *slog.Logger
}

// New builds the account endpoints.
func New(opt Options) *Account {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Account{opt: opt, store: opt.Store, guard: opt.Guard, limiter: ratelimit.NewMemory(opt.Clock), log: opt.Log}
}

// Register adds the account routes to mux. Login, logout, setup and
// reading whether login is required are open (behind the browser checks
// only); the rest need the login.
func (a *Account) Register(mux admin.Mux) {
	open, guarded := a.guard.Open(mux), a.guard.Guarded(mux)
	open("POST /api/auth/login", a.login)
	open("POST /api/auth/logout", a.logout)
	open("POST /api/auth/setup", a.setup)
	open("GET /api/settings/require-login", a.getRequireLogin)
	guarded("PUT /api/settings/require-login", a.putRequireLogin)
	guarded("POST /api/auth/password", a.setPassword)
	guarded("PUT /api/settings/password", a.setPassword)
}

// Prepare runs at start (and after a restore): on first start it stores
// the initial dashboard password — or, without one, prints a setup token
// (setup.go).
func (a *Account) Prepare(ctx context.Context) error {
	if a.opt.InitialPassword != "" {
		hash, err := auth.HashPassword(a.opt.InitialPassword)
		if err != nil {
			return err
		}
		set, err := a.store.SetSettingIfAbsent(ctx, store.SettingPasswordHash, hash)
		if err != nil {
			return fmt.Errorf("auth: store the initial password: %w", err)
		}
		if set {
			a.log.Info("dashboard password set from INITIAL_PASSWORD")
		}
	}
	return a.prepareSetup(ctx)
}

// loginLimit bounds password guesses per client IP: 10 at once, then one
// every 6 seconds.
var loginLimit = ratelimit.Limit{Rate: 1.0 / 6, Burst: 10}

func (a *Account) login(w http.ResponseWriter, r *http.Request) error {
	ip := httpx.ClientIP(r, a.guard.TrustProxy())
	d, err := a.limiter.Allow(r.Context(), "route-login:"+ip, loginLimit)
	if err == nil && !d.Allowed {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many login attempts; retry later", RetryAfter: d.RetryAfter}
	}
	var b struct {
		Password string `json:"password"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.Password == "" {
		return httpx.BadRequest(`"password" is required`)
	}
	hash, err := a.guard.PasswordHash(r.Context())
	if err != nil {
		return err
	}
	if hash == "" {
		return httpx.Errorf(http.StatusConflict, "no_password", "no dashboard password is set yet: "+admin.SetupHow)
	}
	if err := auth.CheckPassword(hash, b.Password); err != nil {
		if errors.Is(err, auth.ErrMismatch) {
			a.log.Info("dashboard login failed", "ip", ip)
			return httpx.Unauthorized("wrong password")
		}
		return err
	}
	return a.guard.StartSession(w, r)
}

func (a *Account) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.guard.EndSession(w, r); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true})
	return nil
}

func (a *Account) getRequireLogin(w http.ResponseWriter, r *http.Request) error {
	required, err := a.guard.RequireLogin(r.Context())
	if err != nil {
		return err
	}
	hash, err := a.guard.PasswordHash(r.Context())
	if err != nil {
		return err
	}
	// loggedIn: the caller's cookie is a live session, so the dashboard
	// knows whether to show its login without a refused request.
	loggedIn, err := a.guard.LoggedIn(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"requireLogin": required, "hasPassword": hash != "", "setupRequired": hash == "",
		"loggedIn": loggedIn})
	return nil
}

func (a *Account) putRequireLogin(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		RequireLogin  *bool `json:"requireLogin"`
		RequireLogin2 *bool `json:"require_login"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
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
	if err := a.store.SetSetting(r.Context(), store.SettingRequireLogin, val); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"requireLogin": *v})
	return nil
}

// setPassword sets or changes the dashboard password; changing it needs
// the current one and ends every session.
func (a *Account) setPassword(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Current  string `json:"current_password"`
		Current2 string `json:"currentPassword"`
		Password string `json:"password"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.Current == "" {
		b.Current = b.Current2
	}
	if len(b.Password) < 8 || len(b.Password) > 256 {
		return httpx.BadRequest(`"password" must be 8 to 256 characters`)
	}
	hash, err := a.guard.PasswordHash(r.Context())
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
	if err := a.store.SetPassword(r.Context(), nh); err != nil {
		return err
	}
	a.guard.ClearCookie(w, r)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "message": "password set; every session has ended, log in again"})
	return nil
}
