package auth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/admin"
)

// A fresh install has no dashboard password. Rather than trusting
// whatever reaches it from its own host (any local process, and any web
// page in a local browser), the gateway then prints a one-time setup
// token in its log at start; POST /api/auth/setup with that token sets
// the password. Only the token's SHA-256 is stored; each start without a
// password replaces it; a successful setup removes it.

// settingSetupToken holds the hex SHA-256 of the current setup token
// ("" or unset: none).
const settingSetupToken = "setup_token_hash"

// prepareSetup prints a new setup token when no password is stored, and
// forgets an old one when a password is.
func (a *Account) prepareSetup(ctx context.Context) error {
	hash, err := a.guard.PasswordHash(ctx)
	if err != nil {
		return err
	}
	if hash != "" {
		if v, _, err := a.store.Setting(ctx, settingSetupToken); err != nil || v == "" {
			return err
		}
		return a.store.SetSetting(ctx, settingSetupToken, "")
	}
	tok := auth.RandomToken("omrs_", 32)
	if err := a.store.SetSetting(ctx, settingSetupToken, auth.TokenHash(tok)); err != nil {
		return fmt.Errorf("auth: store the setup token: %w", err)
	}
	// The one secret ever logged: useless once a password is set, and
	// replaced by the next start.
	a.log.Warn("OmniRoute management is not set up: POST /api/auth/setup with this one-time token and a password "+
		"(it replaces any earlier token; or restart with INITIAL_PASSWORD)", "setup_token", tok)
	return nil
}

func errAlreadySetUp(err error) error {
	if err != nil {
		return err
	}
	return httpx.Errorf(http.StatusConflict, "already_set_up", "a dashboard password is set: log in with POST /api/auth/login")
}

// setup sets the first dashboard password with the setup token and logs
// the caller in.
func (a *Account) setup(w http.ResponseWriter, r *http.Request) error {
	ip := httpx.ClientIP(r, a.guard.TrustProxy())
	d, err := a.limiter.Allow(r.Context(), "route-setup:"+ip, loginLimit)
	if err == nil && !d.Allowed {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: "too many setup attempts; retry later", RetryAfter: d.RetryAfter}
	}
	var b struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	hash, err := a.guard.PasswordHash(r.Context())
	if err != nil {
		return err
	}
	if hash != "" {
		return errAlreadySetUp(nil)
	}
	want, _, err := a.store.Setting(r.Context(), settingSetupToken)
	if err != nil {
		return err
	}
	got := auth.TokenHash(b.Token)
	if b.Token == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		a.log.Info("setup with a wrong token", "ip", ip)
		return httpx.Unauthorized("wrong or expired setup token: use the one the gateway printed at its latest start")
	}
	if len(b.Password) < 8 || len(b.Password) > 256 {
		return httpx.BadRequest(`"password" must be 8 to 256 characters`)
	}
	nh, err := auth.HashPassword(b.Password)
	if err != nil {
		return err
	}
	// The token is spent by one request, whatever races it: of
	// concurrent setups (or replicas) with the same token, one swaps it
	// out and the others find it gone.
	spent, err := a.store.CompareAndSwapSetting(r.Context(), settingSetupToken, want, "")
	if err != nil {
		return err
	}
	if !spent {
		if cur, err := a.guard.PasswordHash(r.Context()); err != nil || cur != "" {
			return errAlreadySetUp(err)
		}
		return httpx.Unauthorized("wrong or expired setup token: use the one the gateway printed at its latest start")
	}
	// And the password is set only where none is (an unset or, after a
	// restore, empty setting): INITIAL_PASSWORD on another replica may
	// have set one meanwhile.
	set, err := a.store.SetFirstPassword(r.Context(), nh)
	if err != nil {
		return err
	}
	if !set {
		return errAlreadySetUp(nil)
	}
	a.log.Info("dashboard password set with the setup token", "ip", ip)
	return a.guard.StartSession(w, r)
}
