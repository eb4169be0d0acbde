package auth_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

func TestLoginSetsCookieAndLogoutRevokes(t *testing.T) {
	e := newEnv(t, nil)
	e.WantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
	if msg := e.WantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": "wrong password"}); !strings.Contains(msg, "wrong password") {
		t.Fatalf("wrong password message %q", msg)
	}
	e.WantError(http.StatusBadRequest, "POST", "/api/auth/login", `{"password":`)

	r := e.Want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "auth_token" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value == "" || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge <= 0 {
		t.Fatalf("login cookie = %+v (Set-Cookie %q)", cookie, r.Header.Values("Set-Cookie"))
	}
	if strings.Count(cookie.Value, ".") != 2 {
		t.Fatalf("cookie %q is not a JWT", cookie.Value)
	}
	e.Want(http.StatusOK, "GET", "/api/keys", nil, remote...)

	e.Want(http.StatusOK, "POST", "/api/auth/logout", nil)
	e.WantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
	// The old token itself no longer works, even if a client kept it.
	e.WantError(http.StatusUnauthorized, "GET", "/api/keys", nil, append([]string{"Cookie", "auth_token=" + cookie.Value}, remote...)...)
	// A forged or garbled cookie is refused too.
	e.WantError(http.StatusUnauthorized, "GET", "/api/keys", nil, append([]string{"Cookie", "auth_token=" + cookie.Value + "x"}, remote...)...)
}

func TestLoginRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	limited := false
	for i := 0; i < 15 && !limited; i++ {
		r := e.Do("POST", "/api/auth/login", map[string]string{"password": "guess"})
		switch r.Status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited = r.Header.Get("Retry-After") != ""
		default:
			t.Fatalf("attempt %d: status %d %s", i, r.Status, r.Body)
		}
	}
	if !limited {
		t.Fatal("15 wrong passwords in a row were never rate limited")
	}
	// The right password is refused too while limited.
	e.Want(http.StatusTooManyRequests, "POST", "/api/auth/login", map[string]string{"password": password})
}

func TestRequireLoginToggle(t *testing.T) {
	e := newEnv(t, nil)
	r := e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil, remote...)
	if v := r.Object(t); v["requireLogin"] != true || v["hasPassword"] != true || v["loggedIn"] != false {
		t.Fatalf("require-login = %v", v)
	}
	e.WantError(http.StatusUnauthorized, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": false}, remote...)
	e.Login()
	if v := e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil, remote...).Object(t); v["loggedIn"] != true {
		t.Fatalf("require-login after login = %v", v)
	}
	e.WantError(http.StatusBadRequest, "PUT", "/api/settings/require-login", map[string]string{"requireLogin": "no"}, remote...)
	e.WantError(http.StatusBadRequest, "PUT", "/api/settings/require-login", map[string]string{}, remote...)
	e.Want(http.StatusOK, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": false}, remote...)
	e.Want(http.StatusOK, "POST", "/api/auth/logout", nil)

	// Login off: management works without a cookie, from anywhere.
	e.Want(http.StatusOK, "GET", "/api/keys", nil, remote...)
	if v := e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil).Object(t); v["requireLogin"] != false {
		t.Fatalf("require-login = %v", v)
	}
	e.Want(http.StatusOK, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": true}, remote...)
	e.WantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
}

// Changing the password needs the current one and ends every session.
func TestChangePassword(t *testing.T) {
	e := newEnv(t, nil)
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "another password"})
	e.Login()
	e.Want(http.StatusOK, "GET", "/api/providers", nil, remote...)
	e.WantError(http.StatusBadRequest, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "short"})
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/password", map[string]string{"current_password": "nope", "password": "another password"})
	e.Want(http.StatusOK, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "another password"})
	e.WantError(http.StatusUnauthorized, "GET", "/api/providers", nil)
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": password})
	e.Want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": "another password"})
	e.Want(http.StatusOK, "GET", "/api/providers", nil)
}

func TestInitialPasswordOnlyAtFirstStart(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusOK, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "changed password"})
	// Restarting with INITIAL_PASSWORD still set must not reset it.
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	if _, err := routeapp.Open(t.Context(), &cfg, routeapp.Deps{DB: e.DB, MasterKey: masterKey, Clock: clock.Real{}, Log: logging.Discard()}); err != nil {
		t.Fatal(err)
	}
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": password})
	e.Want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": "changed password"})
}
