package admin_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// A web page open in the operator's browser can send "simple" cross-site
// requests (forms: urlencoded, multipart or text/plain bodies, no custom
// headers) with the operator's cookies, and can make its own host name
// resolve to the gateway (DNS rebinding). None of them may change or read
// anything, logged in or not.
func TestWebPageCannotAdminister(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	evil := `{"id":"evil","type":"openai","base_url":"http://evil.example/v1"}`

	// Simple requests: the body is JSON, the type is not.
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		e.WantError(http.StatusUnsupportedMediaType, "POST", "/api/providers", evil, "Content-Type", ct)
		e.WantError(http.StatusUnsupportedMediaType, "PUT", "/api/settings/require-login", `{"requireLogin":false}`, "Content-Type", ct)
		e.WantError(http.StatusUnsupportedMediaType, "POST", "/api/auth/login", `{"password":"`+password+`"}`, "Content-Type", ct)
	}
	// A fetch with no body at all has no type either.
	e.WantError(http.StatusUnsupportedMediaType, "POST", "/api/resilience/reset", []byte(nil))
	e.WantError(http.StatusUnsupportedMediaType, "PUT", "/api/db-backups", []byte(nil))

	// Cross-site and same-site pages, with a JSON body they could only
	// send after a CORS preflight (which the gateway never grants).
	for _, hdr := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "http://127.0.0.1:1"}, // another local web app: same site, other origin
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
	} {
		e.WantError(http.StatusForbidden, "POST", "/api/providers", evil, hdr...)
		e.WantError(http.StatusForbidden, "GET", "/api/providers", nil, hdr...)
		e.WantError(http.StatusForbidden, "POST", "/api/auth/login", map[string]string{"password": password}, hdr...)
	}
	// DNS rebinding: the page's own host name, now pointing at the gateway.
	for _, host := range []string{"evil.example", "evil.example:" + strings.Split(e.Srv.URL, ":")[2], "127.0.0.1.nip.io"} {
		e.WantError(http.StatusMisdirectedRequest, "GET", "/api/providers", nil, "Host", host)
		e.WantError(http.StatusMisdirectedRequest, "POST", "/api/providers", evil, "Host", host)
		e.WantError(http.StatusMisdirectedRequest, "GET", "/api/db-backups/export", nil, "Host", host)
		e.WantError(http.StatusMisdirectedRequest, "POST", "/api/auth/login", map[string]string{"password": password}, "Host", host)
	}
	e.WantError(http.StatusNotFound, "GET", "/api/providers/evil", nil)

	// The dashboard's own requests work: same origin, or typed by the
	// operator (Sec-Fetch-Site: none), under every loopback name.
	e.Want(http.StatusCreated, "POST", "/api/providers", `{"id":"good","type":"openai","base_url":"http://127.0.0.1:1/v1"}`,
		"Origin", e.Srv.URL, "Sec-Fetch-Site", "same-origin")
	e.Want(http.StatusOK, "GET", "/api/providers/good", nil, "Sec-Fetch-Site", "none")
	e.Want(http.StatusOK, "GET", "/api/providers/good", nil, "Content-Type", "application/json; charset=utf-8")
	port := strings.Split(e.Srv.URL, ":")[2]
	for _, host := range []string{"localhost:" + port, "LOCALHOST", "127.0.0.1", "[::1]:" + port, "localhost."} {
		e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil, "Host", host, "Origin", "http://"+host)
	}
	e.Want(http.StatusOK, "PATCH", "/api/providers/good", `{"enabled":false}`, "Origin", e.Srv.URL)
	// DELETE needs no body and no type: browsers cannot send it across
	// sites without a preflight.
	e.Want(http.StatusNoContent, "DELETE", "/api/providers/good", nil)
}

// A gateway reached under its own name answers management requests
// under the names the operator lists (--route-allowed-hosts).
func TestAllowedHosts(t *testing.T) {
	for _, c := range []struct {
		allowed []string
		ok, bad []string
	}{
		{nil, []string{"localhost"}, []string{"gw.example.com", "gw.example.com:20128", "10.0.0.5:20128"}},
		{[]string{"gw.example.com"}, []string{"gw.example.com", "GW.example.com:20128", "gw.example.com."}, []string{"evil.example", "x.gw.example.com"}},
		{[]string{"gw.example.com:8443", "10.0.0.5"}, []string{"gw.example.com:8443", "10.0.0.5:20128"}, []string{"gw.example.com", "gw.example.com:443"}},
		{[]string{"*"}, []string{"anything.example:1"}, nil},
	} {
		e := newEnv(t, func(cfg *config.Config) { cfg.Route.AllowedHosts = c.allowed })
		for _, h := range c.ok {
			e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil, "Host", h)
		}
		for _, h := range c.bad {
			if msg := e.WantError(http.StatusMisdirectedRequest, "GET", "/api/settings/require-login", nil, "Host", h); !strings.Contains(msg, "--route-allowed-hosts") {
				t.Fatalf("message %q does not say how to allow a name", msg)
			}
		}
	}
}

// An Origin is the request's own only with the request's scheme, when
// the scheme is known: TLS on the listener, or X-Forwarded-Proto from a
// trusted proxy. A page served over plain http under the gateway's name
// (a captive portal, an injected page) is another origin than the
// https dashboard.
func TestOriginMustHaveTheRequestsScheme(t *testing.T) {
	provider := func(id string) string {
		return `{"id":"` + id + `","type":"openai","base_url":"http://127.0.0.1:1/v1"}`
	}
	// TLS on the listener.
	e := newEnv(t, nil)
	tlsSrv := httptest.NewTLSServer(httpx.Wrap(e.App.Handler(), logging.Discard(), nil))
	t.Cleanup(tlsSrv.Close)
	jar, _ := cookiejar.New(nil)
	tc := tlsSrv.Client()
	tc.Jar = jar
	te := &env{T: t, Srv: tlsSrv, DB: e.DB, App: e.App, C: tc}
	te.Login()
	host := strings.TrimPrefix(tlsSrv.URL, "https://")
	te.WantError(http.StatusForbidden, "POST", "/api/providers", provider("t1"), "Origin", "http://"+host)
	te.WantError(http.StatusForbidden, "POST", "/api/auth/login", map[string]string{"password": password}, "Origin", "http://"+host)
	te.Want(http.StatusCreated, "POST", "/api/providers", provider("t2"), "Origin", "https://"+host)

	// X-Forwarded-Proto from a trusted proxy (the loopback peer here).
	p := newEnv(t, func(c *config.Config) { c.TrustProxy = "127.0.0.1" })
	p.Login()
	ph := strings.TrimPrefix(p.Srv.URL, "http://")
	p.WantError(http.StatusForbidden, "POST", "/api/providers", provider("p1"), "Origin", "http://"+ph, "X-Forwarded-Proto", "https")
	p.WantError(http.StatusForbidden, "POST", "/api/providers", provider("p2"), "Origin", "https://"+ph, "X-Forwarded-Proto", "http")
	p.Want(http.StatusCreated, "POST", "/api/providers", provider("p3"), "Origin", "https://"+ph, "X-Forwarded-Proto", "https")
	p.Want(http.StatusCreated, "POST", "/api/providers", provider("p4"), "Origin", "http://"+ph, "X-Forwarded-Proto", "http")

	// From a peer that is not a trusted proxy the header says nothing,
	// and a plain listener does not know its clients' scheme (a proxy
	// may terminate TLS in front of it): the host and port decide.
	e.Login()
	port := strings.Split(e.Srv.URL, ":")[2]
	e.Want(http.StatusCreated, "POST", "/api/providers", provider("u1"), "Origin", "https://127.0.0.1:"+port, "X-Forwarded-Proto", "http")
	e.Want(http.StatusCreated, "POST", "/api/providers", provider("u2"), "Origin", "http://127.0.0.1:"+port)
}

func TestWithoutDatabaseNoManagement(t *testing.T) {
	cfg := config.Default()
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/providers")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("management without a database: status %d", res.StatusCode)
	}
}
