package api_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 1. auth ----

func TestLoginSecurityKey(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u := f.env.NewUser("")

	r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key})
	r.wantStatus(t, http.StatusOK)
	body := r.object(t)
	for _, k := range []string{"token", "refresh_token"} {
		if s, _ := body[k].(string); s == "" {
			t.Errorf("login response %s: %q is not a non-empty string", r.Body, k)
		}
	}
	if body["token"] == body["refresh_token"] {
		t.Error("token and refresh_token are equal")
	}
	me := f.do("GET", "/api/v2/users/me", body["token"].(string), nil)
	me.wantStatus(t, http.StatusOK)
	if got := me.object(t)["id"]; got != u.ID {
		t.Errorf("me.id = %v, want %s", got, u.ID)
	}

	t.Run("unknown key", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: "oek_doesnotexist"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		_, err := f.anon().LoginSecurityKey(f.ctx, u.Key+"x")
		apiWantErr(t, err, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("empty key", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", `{"key":""}`).wantError(t, http.StatusBadRequest, "invalid_request")
	})
	t.Run("keys list never shows secrets", func(t *testing.T) {
		f := f.in(t)
		r := f.do("GET", "/api/v2/security-keys", body["token"].(string), nil)
		r.wantStatus(t, http.StatusOK)
		if bytes.Contains(r.Body, []byte(u.Key)) || bytes.Contains(r.Body, []byte("hash")) {
			t.Errorf("security key list leaks a secret: %s", r.Body)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok1, rt1 := c.Tokens()

	pair, err := c.Refresh(f.ctx)
	apiOK(t, err)
	tok2, rt2 := c.Tokens()
	if pair.Token == "" || pair.RefreshToken == "" || rt2 == rt1 || tok2 == tok1 {
		t.Fatalf("refresh did not rotate the pair: %+v", pair)
	}
	if _, err := c.Me(f.ctx); err != nil {
		t.Fatalf("new access token rejected: %v", err)
	}

	// Second use of the spent refresh token: 401, and the whole family
	// (including the fresh rt2) is revoked.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt1}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt2}).
		wantError(t, http.StatusUnauthorized, "unauthorized")

	t.Run("camelCase alias", func(t *testing.T) {
		f := f.in(t)
		_, c := f.user("")
		r := f.do("POST", "/api/v2/auth/refresh", "", map[string]string{"refreshToken": apiRefreshOf(c)})
		r.wantStatus(t, http.StatusOK)
		var tr wire.TokenResponse
		r.decode(t, &tr)
		if tr.Token == "" || tr.RefreshToken == "" {
			t.Fatalf("refresh response %s lacks tokens", r.Body)
		}
	})
	t.Run("unknown or empty", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: "oer_nope"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		f.do("POST", "/api/v2/auth/refresh", "", `{}`).wantError(t, http.StatusBadRequest, "invalid_request")
	})
	t.Run("refresh token expiry", func(t *testing.T) {
		ff := newAPIFx(t, edgetest.Options{})
		_, c := ff.user("")
		rt := apiRefreshOf(c)
		ff.env.Clock.Advance(ff.env.Config.RefreshTokenTTL)
		ff.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
}

func TestRevokedSecurityKey(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, owner := f.user("")

	check := func(t *testing.T, key, rt string) {
		t.Helper()
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: key}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	}

	t.Run("via API", func(t *testing.T) {
		f := f.in(t)
		k, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "robot"})
		apiOK(t, err)
		robot := f.anon()
		_, err = robot.LoginSecurityKey(f.ctx, k.Key)
		apiOK(t, err)
		apiOK(t, owner.RevokeSecurityKey(f.ctx, k.ID))
		check(t, k.Key, apiRefreshOf(robot))

		keys, err := owner.SecurityKeys(f.ctx)
		apiOK(t, err)
		for _, sk := range keys {
			if sk.ID == k.ID && sk.RevokedAt == nil {
				t.Errorf("revoked key %s listed without revoked_at", k.ID)
			}
		}
	})
	t.Run("via Service", func(t *testing.T) {
		f := f.in(t)
		// The harness key of u: find its id, revoke it in the service.
		keys, err := owner.SecurityKeys(f.ctx)
		apiOK(t, err)
		var id string
		for _, k := range keys {
			if k.Name == "test" {
				id = k.ID
			}
		}
		if id == "" {
			t.Fatalf("harness key not listed: %+v", keys)
		}
		other := f.env.Client(u)
		apiOK(t, f.env.Service.RevokeSecurityKey(f.ctx, u.ID, id))
		check(t, u.Key, apiRefreshOf(other))
	})
	t.Run("another user's key", func(t *testing.T) {
		f := f.in(t)
		_, stranger := f.user("")
		k, err := stranger.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "theirs"})
		apiOK(t, err)
		// owner's own key was revoked above, and its sessions with it.
		_, owner := f.user("")
		apiWantErr(t, owner.RevokeSecurityKey(f.ctx, k.ID), http.StatusNotFound, "not_found")
		_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
		apiOK(t, err)
	})
}

func TestSecurityKeyExpiry(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, owner := f.user("")
	k, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "short", ExpiresIn: "1h"})
	apiOK(t, err)
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(f.env.Clock.Now().Add(time.Hour)) {
		t.Errorf("expires_at = %v, want now+1h", k.ExpiresAt)
	}

	robot := f.anon()
	_, err = robot.LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)
	f.env.Clock.Advance(time.Hour - time.Second)
	_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)

	f.env.Clock.Advance(time.Second) // exactly at expiry: no longer valid
	_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
	apiWantErr(t, err, http.StatusUnauthorized, "unauthorized")
	// A session the key started dies with it.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: apiRefreshOf(robot)}).
		wantError(t, http.StatusUnauthorized, "unauthorized")

	for _, bad := range []string{"-1h", "0s", "soon"} {
		_, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "bad", ExpiresIn: bad})
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	old, oldRT := c.Tokens()

	f.env.Clock.Advance(f.env.Config.AccessTokenTTL - time.Second)
	f.do("GET", "/api/v2/users/me", old, nil).wantStatus(t, http.StatusOK)

	f.env.Clock.Advance(2 * time.Second)
	f.do("GET", "/api/v2/users/me", old, nil).wantError(t, http.StatusUnauthorized, "unauthorized")

	// The client refreshes on the 401 and retries.
	if _, err := c.Me(f.ctx); err != nil {
		t.Fatalf("client did not recover from an expired token: %v", err)
	}
	tok, rt := c.Tokens()
	if tok == old || rt == oldRT {
		t.Fatal("client did not rotate its tokens")
	}
	f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	// It rotated through /refresh, so the old refresh token is spent.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: oldRT}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
}

func TestBearerRequired(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	other := newAPIFx(t, edgetest.Options{})
	_, foreign := other.user("") // signed with another master key

	cases := map[string]string{
		"missing":        "",
		"empty bearer":   "Bearer ",
		"garbage":        "Bearer garbage",
		"jwt-ish":        "Bearer a.b.c",
		"basic":          "Basic dXNlcjpwYXNz",
		"refresh token":  "Bearer oer_abc",
		"foreign signer": "Bearer " + apiToken(foreign),
	}
	for name, h := range cases {
		for _, path := range []string{"/api/v2/users/me", "/api/v2/devices", "/api/v2/virtual-networks"} {
			req, err := http.NewRequestWithContext(f.ctx, "GET", f.env.URL+path, nil)
			apiOK(t, err)
			if h != "" {
				req.Header.Set("Authorization", h)
			}
			r := f.send(req)
			t.Run(name+path, func(t *testing.T) { r.wantError(t, http.StatusUnauthorized, "unauthorized") })
		}
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, c := f.user("")

	t.Run("current token", func(t *testing.T) {
		f := f.in(t)
		rt := apiRefreshOf(c)
		apiOK(t, c.Logout(f.ctx))
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("spent token revokes the family", func(t *testing.T) {
		f := f.in(t)
		c := f.env.Client(u)
		rt1 := apiRefreshOf(c)
		_, err := c.Refresh(f.ctx)
		apiOK(t, err)
		rt2 := apiRefreshOf(c)
		f.do("POST", "/api/v2/auth/logout", "", wire.RefreshRequest{RefreshToken: rt1}).wantStatus(t, http.StatusOK)
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt2}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("other families survive", func(t *testing.T) {
		f := f.in(t)
		a, b := f.env.Client(u), f.env.Client(u)
		apiOK(t, a.Logout(f.ctx))
		_, err := b.Refresh(f.ctx)
		apiOK(t, err)
	})
	t.Run("unknown token", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/logout", "", wire.RefreshRequest{RefreshToken: "oer_nope"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
}
