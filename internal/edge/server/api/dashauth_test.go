package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/server/api"
	"github.com/omniedge/omni/internal/platform/config"
)

// dashReq sends a request as a browser would: JSON body, the given Origin
// (none when ""), and the session cookie when set.
func dashReq(t *testing.T, env *edgetest.Env, method, path, origin, ctype, body, cookie string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, env.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: cookie})
	}
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// dashLogin logs in through the dashboard endpoint and returns the cookie.
func dashLogin(t *testing.T, env *edgetest.Env, email string) string {
	t.Helper()
	res := dashReq(t, env, "POST", "/api/v2/auth/dashboard/login", env.URL, "application/json",
		`{"email":"`+email+`","password":"correct horse battery"}`, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("dashboard login: %d", res.StatusCode)
	}
	for _, c := range res.Cookies() {
		if c.Name == api.SessionCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Errorf("session cookie flags: HttpOnly %v SameSite %v Path %q; want HttpOnly, Strict, /", c.HttpOnly, c.SameSite, c.Path)
			}
			return c.Value
		}
	}
	t.Fatal("dashboard login set no session cookie")
	return ""
}

// The dashboard's cookie works for the API in place of a bearer token,
// a wrong password gets none, logout revokes the login session (the old
// cookie is refused afterwards), and the session is listed and revocable
// like any other.
func TestDashboardCookieSession(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); testDashboardCookieSession(t, edgetest.Options{}) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); testDashboardCookieSession(t, edgetest.Options{Postgres: true}) })
	t.Run("postgres+redis", func(t *testing.T) {
		t.Parallel()
		testDashboardCookieSession(t, edgetest.Options{Postgres: true, Redis: true})
	})
}

func testDashboardCookieSession(t *testing.T, o edgetest.Options) {
	env := edgetest.New(t, o)
	u := env.NewUser("")

	if res := dashReq(t, env, "POST", "/api/v2/auth/dashboard/login", env.URL, "application/json",
		`{"email":"`+u.Email+`","password":"wrong"}`, ""); res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
		t.Fatalf("wrong password: %d with %d cookies, want 401 and none", res.StatusCode, len(res.Cookies()))
	}
	cookie := dashLogin(t, env, u.Email)
	if res := dashReq(t, env, "GET", "/api/v2/users/me", "", "", "", cookie); res.StatusCode != http.StatusOK {
		t.Fatalf("GET me with the cookie: %d", res.StatusCode)
	}
	if res := dashReq(t, env, "POST", "/api/v2/virtual-networks", env.URL, "application/json", `{"name":"home"}`, cookie); res.StatusCode != http.StatusCreated {
		t.Fatalf("create network with the cookie: %d", res.StatusCode)
	}
	// A forged cookie (another session id, or a changed MAC) is refused.
	id, mac, _ := strings.Cut(cookie, ".")
	flipped := "A"
	if mac[0] == 'A' {
		flipped = "B"
	}
	for _, bad := range []string{id + "." + flipped + mac[1:], "fam_forged." + mac, id} {
		if res := dashReq(t, env, "GET", "/api/v2/users/me", "", "", "", bad); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged cookie %q: %d, want 401", bad, res.StatusCode)
		}
	}
	// The session is one of the user's login sessions.
	c := env.Client(u)
	// Another account's session (say, someone once invited onto a shared
	// machine) sees none of this user's networks.
	other := env.NewUser("")
	otherCookie := dashLogin(t, env, other.Email)
	nets, err := c.Networks(context.Background())
	if err != nil || len(nets) != 1 {
		t.Fatalf("networks: %+v, %v", nets, err)
	}
	if res := dashReq(t, env, "GET", "/api/v2/virtual-networks/"+nets[0].ID, "", "", "", otherCookie); res.StatusCode != http.StatusForbidden {
		t.Errorf("another account's cookie reads the network: %d, want 403", res.StatusCode)
	}
	if res := dashReq(t, env, "DELETE", "/api/v2/virtual-networks/"+nets[0].ID, env.URL, "", "", otherCookie); res.StatusCode != http.StatusForbidden {
		t.Errorf("another account's cookie deletes the network: %d, want 403", res.StatusCode)
	}
	list, err := c.LoginSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list {
		found = found || (s.ID == id && s.Method == "dashboard")
	}
	if !found {
		t.Fatalf("sessions %+v lack the dashboard session %s", list, id)
	}
	if res := dashReq(t, env, "POST", "/api/v2/auth/dashboard/logout", env.URL, "application/json", `{}`, cookie); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res := dashReq(t, env, "GET", "/api/v2/users/me", "", "", "", cookie); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie after logout: %d, want 401", res.StatusCode)
	}

	// Revoking the session elsewhere (DELETE /api/v2/sessions/{id}) ends
	// it at once.
	cookie = dashLogin(t, env, u.Email)
	id, _, _ = strings.Cut(cookie, ".")
	if err := c.RevokeLoginSession(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if res := dashReq(t, env, "GET", "/api/v2/devices", "", "", "", cookie); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie of a revoked session: %d, want 401", res.StatusCode)
	}
}

// A page of another site open in the user's browser cannot write with
// the user's cookie: a foreign Origin, a cross-site Sec-Fetch-Site, a
// write without Origin, or a form body type (which needs no preflight)
// are refused before anything changes.
func TestDashboardCookieCrossSiteRefused(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	cookie := dashLogin(t, env, u.Email)
	body := `{"name":"evil"}`
	cases := []struct {
		name, origin, ctype, site string
		want                      int
	}{
		{"foreign origin", "https://evil.example", "application/json", "", http.StatusForbidden},
		{"same host other port", strings.TrimSuffix(env.URL, env.URL[strings.LastIndex(env.URL, ":"):]) + ":1", "application/json", "", http.StatusForbidden},
		{"origin with a path", env.URL + "/x", "application/json", "", http.StatusForbidden},
		{"null origin", "null", "application/json", "", http.StatusForbidden},
		{"no origin", "", "application/json", "", http.StatusForbidden},
		{"form body", env.URL, "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{"text body", env.URL, "text/plain", "", http.StatusUnsupportedMediaType},
		{"cross-site fetch", env.URL, "application/json", "cross-site", http.StatusForbidden},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("POST", env.URL+"/api/v2/virtual-networks", strings.NewReader(body))
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		req.Header.Set("Content-Type", tc.ctype)
		if tc.site != "" {
			req.Header.Set("Sec-Fetch-Site", tc.site)
		}
		req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: cookie})
		res, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, res.StatusCode, tc.want)
		}
	}
	// Deletes are writes too.
	if res := dashReq(t, env, "DELETE", "/api/v2/security-keys/x", "https://evil.example", "", "", cookie); res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin DELETE: %d, want 403", res.StatusCode)
	}
	// Logging in from another site's page is refused too (login CSRF).
	if res := dashReq(t, env, "POST", "/api/v2/auth/dashboard/login", "https://evil.example", "application/json",
		`{"email":"`+u.Email+`","password":"correct horse battery"}`, ""); res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin login: %d, want 403", res.StatusCode)
	}
	nets, err := env.Client(u).Networks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 0 {
		t.Fatalf("a refused write created networks: %+v", nets)
	}
}

// The dashboard is served at / with a strict CSP, client-side routes get
// the page, and the API keeps its own answers (an unknown /api/ path is
// still the API's JSON 404).
func TestDashboardServed(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	for _, p := range []string{"/", "/networks", "/devices", "/keys"} {
		res, err := env.Server.Client().Get(env.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: %d %q CSP %q", p, res.StatusCode, res.Header.Get("Content-Type"), csp)
		}
	}
	// Paths that are neither a page nor a file are not answered with the
	// page (the listener serves no /metrics).
	for _, p := range []string{"/metrics", "/debug/pprof/", "/nothing", "/app.map"} {
		res, err := env.Server.Client().Get(env.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, res.StatusCode)
		}
	}
	res, err := env.Server.Client().Get(env.URL + "/api/v2/nothing")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Errorf("unknown API path: %d %q, want the API's JSON 404", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// Behind --public-url https://…, the Origin must be exactly that origin
// (an http page of the same name is another origin) and the cookie is
// Secure.
func TestDashboardCookiePublicURL(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{Config: func(c *config.Config) { c.PublicURL = "https://vpn.example.com" }})
	u := env.NewUser("")
	res := dashReq(t, env, "POST", "/api/v2/auth/dashboard/login", "https://vpn.example.com", "application/json",
		`{"email":"`+u.Email+`","password":"correct horse battery"}`, "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login from the public origin: %d", res.StatusCode)
	}
	var cookie string
	for _, c := range res.Cookies() {
		if c.Name == api.SessionCookie {
			cookie = c.Value
			if !c.Secure {
				t.Error("session cookie behind an https public URL is not Secure")
			}
		}
	}
	for origin, want := range map[string]int{
		"http://vpn.example.com":  http.StatusForbidden,
		"https://vpn.example.net": http.StatusForbidden,
		"https://vpn.example.com": http.StatusCreated,
	} {
		if res := dashReq(t, env, "POST", "/api/v2/virtual-networks", origin, "application/json", `{"name":"n"}`, cookie); res.StatusCode != want {
			t.Errorf("write from %s: %d, want %d", origin, res.StatusCode, want)
		}
	}
}
