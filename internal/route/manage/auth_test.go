package manage_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestLoginSetsCookieAndLogoutRevokes(t *testing.T) {
	e := newEnv(t, nil)
	e.wantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
	if msg := e.wantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": "wrong password"}); !strings.Contains(msg, "wrong password") {
		t.Fatalf("wrong password message %q", msg)
	}
	e.wantError(http.StatusBadRequest, "POST", "/api/auth/login", `{"password":`)

	r := e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
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
	e.want(http.StatusOK, "GET", "/api/keys", nil, remote...)

	e.want(http.StatusOK, "POST", "/api/auth/logout", nil)
	e.wantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
	// The old token itself no longer works, even if a client kept it.
	e.wantError(http.StatusUnauthorized, "GET", "/api/keys", nil, append([]string{"Cookie", "auth_token=" + cookie.Value}, remote...)...)
	// A forged or garbled cookie is refused too.
	e.wantError(http.StatusUnauthorized, "GET", "/api/keys", nil, append([]string{"Cookie", "auth_token=" + cookie.Value + "x"}, remote...)...)
}

func TestLoginRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	limited := false
	for i := 0; i < 15 && !limited; i++ {
		r := e.do("POST", "/api/auth/login", map[string]string{"password": "guess"})
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
	e.want(http.StatusTooManyRequests, "POST", "/api/auth/login", map[string]string{"password": password})
}

func TestRequireLoginToggle(t *testing.T) {
	e := newEnv(t, nil)
	r := e.want(http.StatusOK, "GET", "/api/settings/require-login", nil, remote...)
	if v := r.Object(t); v["requireLogin"] != true || v["hasPassword"] != true {
		t.Fatalf("require-login = %v", v)
	}
	e.wantError(http.StatusUnauthorized, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": false}, remote...)
	e.login()
	e.wantError(http.StatusBadRequest, "PUT", "/api/settings/require-login", map[string]string{"requireLogin": "no"}, remote...)
	e.wantError(http.StatusBadRequest, "PUT", "/api/settings/require-login", map[string]string{}, remote...)
	e.want(http.StatusOK, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": false}, remote...)
	e.want(http.StatusOK, "POST", "/api/auth/logout", nil)

	// Login off: management works without a cookie, from anywhere.
	e.want(http.StatusOK, "GET", "/api/keys", nil, remote...)
	if v := e.want(http.StatusOK, "GET", "/api/settings/require-login", nil).Object(t); v["requireLogin"] != false {
		t.Fatalf("require-login = %v", v)
	}
	e.want(http.StatusOK, "PUT", "/api/settings/require-login", map[string]bool{"requireLogin": true}, remote...)
	e.wantError(http.StatusUnauthorized, "GET", "/api/keys", nil, remote...)
}

// Changing the password needs the current one and ends every session.
func TestChangePassword(t *testing.T) {
	e := newEnv(t, nil)
	e.wantError(http.StatusUnauthorized, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "another password"})
	e.login()
	e.want(http.StatusOK, "GET", "/api/providers", nil, remote...)
	e.wantError(http.StatusBadRequest, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "short"})
	e.wantError(http.StatusUnauthorized, "POST", "/api/auth/password", map[string]string{"current_password": "nope", "password": "another password"})
	e.want(http.StatusOK, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "another password"})
	e.wantError(http.StatusUnauthorized, "GET", "/api/providers", nil)
	e.wantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": password})
	e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": "another password"})
	e.want(http.StatusOK, "GET", "/api/providers", nil)
}

func TestInitialPasswordOnlyAtFirstStart(t *testing.T) {
	e := newEnv(t, nil)
	e.login()
	e.want(http.StatusOK, "POST", "/api/auth/password", map[string]string{"current_password": password, "password": "changed password"})
	// Restarting with INITIAL_PASSWORD still set must not reset it.
	if err := e.app.Manager.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.wantError(http.StatusUnauthorized, "POST", "/api/auth/login", map[string]string{"password": password})
	e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": "changed password"})
}
