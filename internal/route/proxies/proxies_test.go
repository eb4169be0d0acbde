package proxies_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// fixture is a gateway with two providers on their own upstreams, an
// HTTP proxy and a SOCKS5 proxy (with credentials) started by the test.
type fixture struct {
	e        *admintest.Env
	a, b     *upstream
	hp       *httpProxy
	sp       *socksProxy
	hpID     string
	spID     string
	credA    string // provider pa's stored credential (its connection)
	password string
	log      *lockedBuffer // everything the gateway logged
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, "sqlite")
}

// newFixtureOn is newFixture over a database of dialect.
func newFixtureOn(t *testing.T, dialect string) *fixture {
	t.Helper()
	lb := &lockedBuffer{}
	dsn := filepath.Join(t.TempDir(), "omni.db")
	if dialect == "postgres" {
		dsn = testenv.Postgres(t)
	}
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	env := openWith(t, db, nil, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	f := &fixture{e: env, a: startUpstream(t, "a"), b: startUpstream(t, "b"),
		hp: startHTTPProxy(t, "", ""), password: "s3cret-proxy-passw0rd", log: lb}
	f.sp = startSOCKS(t, "alice", f.password)
	e := f.e
	for id, u := range map[string]*upstream{"pa": f.a, "pb": f.b} {
		e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": "openai", "base_url": u.URL + "/v1",
			"api_key": "sk-" + id + "-0000000000", "models": []string{"m"}})
	}
	f.hpID = f.create(map[string]any{"name": "forward", "type": "http", "host": "127.0.0.1", "port": port(t, f.hp.addr)})
	f.spID = f.create(map[string]any{"name": "socks", "type": "socks5", "host": "127.0.0.1", "port": port(t, f.sp.addr),
		"username": "alice", "password": f.password, "notes": "team socks"})
	var prov struct {
		Credentials []struct {
			ID string `json:"id"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(e.Want(http.StatusOK, "GET", "/api/providers/pa", nil).Body, &prov); err != nil || len(prov.Credentials) != 1 {
		t.Fatalf("provider pa: %v %+v", err, prov)
	}
	f.credA = prov.Credentials[0].ID
	return f
}

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

func (f *fixture) create(body map[string]any) string {
	f.e.T.Helper()
	return f.e.Want(http.StatusCreated, "POST", "/api/v1/management/proxies", body).Object(f.e.T)["id"].(string)
}

func (f *fixture) assign(scope, scopeID string, proxyID any) {
	f.e.T.Helper()
	body := map[string]any{"scope": scope, "proxyId": proxyID}
	if scopeID != "" {
		body["scopeId"] = scopeID
	}
	f.e.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/assignments", body)
}

// via sends a chat to provider id and names the way it reached its
// upstream: "http", "socks" or "direct".
func (f *fixture) via(id string) string {
	t := f.e.T
	t.Helper()
	up := map[string]*upstream{"pa": f.a, "pb": f.b}[id]
	if got := f.e.ChatText(id + "/m"); got != "hi from "+up.name {
		t.Fatalf("chat to %s answered %q", id, got)
	}
	peer := up.last(t)
	switch {
	case carriedFrom(&f.hp.locals, peer):
		return "http"
	case carriedFrom(&f.sp.locals, peer):
		return "socks"
	}
	return "direct"
}

func (f *fixture) wantVia(id, want string) {
	f.e.T.Helper()
	if got := f.via(id); got != want {
		f.e.T.Fatalf("chat to %s went %s, want %s", id, got, want)
	}
}

// Upstream chat calls go through the proxy assigned to their scope:
// connection beats provider beats global; unassigned goes direct.
func TestChatGoesThroughTheAssignedProxy(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { chatGoesThroughTheAssignedProxy(t, newFixtureOn(t, dialect)) })
	}
}

func chatGoesThroughTheAssignedProxy(t *testing.T, f *fixture) {
	f.wantVia("pa", "direct")
	f.wantVia("pb", "direct")

	f.assign("provider", "pa", f.hpID)
	f.wantVia("pa", "http")
	f.wantVia("pb", "direct")
	if f.hp.carried.Load() == 0 {
		t.Fatal("the HTTP proxy counted no request")
	}

	// Global applies to every provider without its own.
	f.assign("global", "", f.spID)
	f.wantVia("pb", "socks")
	f.wantVia("pa", "http")

	// The connection's own beats its provider's.
	f.assign("connection", f.credA, f.spID)
	f.wantVia("pa", "socks")
	r := f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/assignments?resolve_connection_id="+f.credA, nil).Object(t)
	if r["scope"] != "connection" || r["proxyId"] != f.spID || r["providerId"] != "pa" {
		t.Fatalf("resolve: %v", r)
	}
	f.assign("connection", f.credA, nil) // null clears
	f.wantVia("pa", "http")
	r = f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/assignments?resolve_connection_id="+f.credA, nil).Object(t)
	if r["scope"] != "provider" || r["proxyId"] != f.hpID {
		t.Fatalf("resolve after clearing: %v", r)
	}

	// Where used, then delete: refused while assigned, forced detaches.
	wu := f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies?id="+f.spID+"&where_used=1", nil).Object(t)
	if wu["global"] != true || wu["count"].(float64) != 1 {
		t.Fatalf("where_used: %v", wu)
	}
	f.e.WantError(http.StatusConflict, "DELETE", "/api/v1/management/proxies?id="+f.hpID, nil)
	f.wantVia("pa", "http")
	f.e.Want(http.StatusOK, "DELETE", "/api/v1/management/proxies?id="+f.hpID+"&force=1", nil)
	f.wantVia("pa", "socks")

	// The global shortcut in settings is the global assignment.
	s := f.e.Want(http.StatusOK, "GET", "/api/settings/proxy", nil).Object(t)
	if s["proxyId"] != f.spID || strings.Contains(s["url"].(string), f.password) {
		t.Fatalf("settings: %v", s)
	}
	f.e.Want(http.StatusOK, "PUT", "/api/settings/proxy", map[string]any{"proxyId": nil})
	f.wantVia("pa", "direct")
	f.wantVia("pb", "direct")
	f.e.Want(http.StatusOK, "PUT", "/api/settings/proxy", map[string]any{"url": "http://" + f.hp.addr})
	f.wantVia("pb", "http")

	// Health counts the real calls.
	h := f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/health?hours=24", nil)
	var hb struct {
		Proxies []struct {
			ProxyID string `json:"proxyId"`
			Success int64  `json:"success"`
			Failure int64  `json:"failure"`
			Latency *int64 `json:"avgLatencyMs"`
		} `json:"proxies"`
	}
	if err := json.Unmarshal(h.Body, &hb); err != nil {
		t.Fatal(err)
	}
	var socksOK int64
	for _, p := range hb.Proxies {
		if p.ProxyID == f.spID {
			socksOK = p.Success
			if p.Latency == nil {
				t.Fatalf("no latency: %s", h.Body)
			}
		}
	}
	if socksOK < 3 {
		t.Fatalf("socks proxy health success %d, want ≥ 3: %s", socksOK, h.Body)
	}
}

// The proxy's password is sealed at rest and never shown; a wrong one
// fails the call (counted as a failure) rather than going out directly.
func TestProxyCredentials(t *testing.T) {
	f := newFixture(t)
	f.assign("provider", "pb", f.spID)
	f.wantVia("pb", "socks")
	for _, path := range []string{"/api/v1/management/proxies", "/api/v1/management/proxies?id=" + f.spID,
		"/api/v1/management/proxies?id=" + f.spID + "&where_used=1", "/api/settings/proxy", "/api/v1/management/proxies/assignments?resolve_connection_id=x"} {
		if b := f.e.Want(http.StatusOK, "GET", path, nil).Body; strings.Contains(string(b), f.password) || strings.Contains(string(b), "alice") {
			t.Fatalf("GET %s shows the credentials: %s", path, b)
		}
	}
	rows, err := f.e.DB.Query(context.Background(), `SELECT id, name, type, host, auth, notes FROM gateway_proxies`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [6]string
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5]); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.Join(cols[:], " "), f.password) || strings.Contains(strings.Join(cols[:], " "), "alice") {
			t.Fatalf("the database holds the credentials in clear: %v", cols)
		}
	}
	rows.Close()

	// A PATCH without credentials keeps them.
	f.e.Want(http.StatusOK, "PATCH", "/api/v1/management/proxies", map[string]any{"id": f.spID, "notes": "renamed"})
	f.wantVia("pb", "socks")
	// A wrong password: refused by the proxy, never sent around it.
	f.e.Want(http.StatusOK, "PATCH", "/api/v1/management/proxies", map[string]any{"id": f.spID, "password": "wrong"})
	before := f.b.count()
	r := f.e.Do("POST", "/v1/chat/completions", admintest.Chat("pb/m"))
	if r.Status < 500 || f.b.count() != before {
		t.Fatalf("chat through a proxy refusing its credentials: %d %s (upstream saw %d → %d)", r.Status, r.Body, before, f.b.count())
	}
	if strings.Contains(string(r.Body), "wrong") || f.sp.refused.Load() == 0 {
		t.Fatalf("answer %s, refused %d", r.Body, f.sp.refused.Load())
	}
	h := f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/health", nil)
	if !strings.Contains(string(h.Body), `"failure":1`) && !strings.Contains(string(h.Body), `"failure":2`) {
		t.Fatalf("health does not count the failure: %s", h.Body)
	}

	if strings.Contains(f.log.String(), f.password) || strings.Contains(f.log.String(), "wrong") {
		t.Fatalf("the log holds a proxy password:\n%s", f.log.String())
	}

	// HTTP proxy auth.
	ap := startHTTPProxy(t, "bob", "pa55-http-proxy")
	id := f.create(map[string]any{"name": "authed", "type": "http", "host": "127.0.0.1", "port": port(t, ap.addr), "username": "bob", "password": "pa55-http-proxy"})
	f.assign("provider", "pa", id)
	f.e.ChatText("pa/m")
	if ap.carried.Load() != 1 || !carriedFrom(&ap.locals, f.a.last(t)) {
		t.Fatalf("authenticated HTTP proxy carried %d (refused %d)", ap.carried.Load(), ap.refused.Load())
	}
}

// Bad input is a 400 and changes nothing.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	before := string(f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies", nil).Body)
	beforeA := string(f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/assignments", nil).Body)
	good := map[string]any{"name": "x", "type": "http", "host": "127.0.0.1", "port": 8080}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, body := range []any{
		with("type", "ftp"), with("type", "socks4"), with("port", 0), with("port", 70000), with("host", ""),
		with("host", "http://evil/"), with("host", "a b"), with("host", "h:80"), with("name", ""),
		with("name", strings.Repeat("n", 101)), with("password", "p"), with("notes", strings.Repeat("n", 3000)),
		with("port", "80"), "not json",
	} {
		f.e.WantError(http.StatusBadRequest, "POST", "/api/v1/management/proxies", body)
	}
	f.e.WantError(http.StatusConflict, "POST", "/api/v1/management/proxies", with("name", "forward"))
	f.e.WantError(http.StatusRequestEntityTooLarge, "POST", "/api/v1/management/proxies", with("notes", strings.Repeat("n", 300<<10)))
	f.e.WantError(http.StatusBadRequest, "PATCH", "/api/v1/management/proxies", map[string]any{"port": 81})
	f.e.WantError(http.StatusBadRequest, "PATCH", "/api/v1/management/proxies", map[string]any{"id": f.hpID, "port": 0})
	f.e.WantError(http.StatusBadRequest, "PATCH", "/api/v1/management/proxies", map[string]any{"id": f.hpID, "type": "gopher"})
	f.e.WantError(http.StatusNotFound, "PATCH", "/api/v1/management/proxies", map[string]any{"id": "prx_nope", "port": 81})
	for _, body := range []any{
		map[string]any{"scope": "planet", "scopeId": "x", "proxyId": f.hpID},
		map[string]any{"scope": "provider", "proxyId": f.hpID},
		map[string]any{"scope": "global", "scopeId": "x", "proxyId": f.hpID},
		map[string]any{"scope": "provider", "scopeId": "has space", "proxyId": f.hpID},
		map[string]any{"scope": "provider", "scopeId": "pa", "proxyId": 7},
	} {
		f.e.WantError(http.StatusBadRequest, "PUT", "/api/v1/management/proxies/assignments", body)
	}
	f.e.WantError(http.StatusNotFound, "PUT", "/api/v1/management/proxies/assignments", map[string]any{"scope": "provider", "scopeId": "pa", "proxyId": "prx_nope"})
	many := make([]string, 501)
	for i := range many {
		many[i] = "p" + strings.Repeat("x", i%5)
	}
	for _, body := range []any{
		map[string]any{"scope": "provider", "scopeIds": many, "proxyId": f.hpID},
		map[string]any{"scope": "provider", "scopeIds": []string{}, "proxyId": f.hpID},
		map[string]any{"scope": "global", "scopeIds": []string{"x"}, "proxyId": f.hpID},
		map[string]any{"scope": "provider", "scopeIds": []string{"ok", "bad id"}, "proxyId": f.hpID},
	} {
		f.e.WantError(http.StatusBadRequest, "PUT", "/api/v1/management/proxies/bulk-assign", body)
	}
	for _, q := range []string{"hours=0", "hours=9999", "hours=x"} {
		f.e.WantError(http.StatusBadRequest, "GET", "/api/v1/management/proxies/health?"+q, nil)
	}
	for _, body := range []any{map[string]any{"url": "ftp://h:1"}, map[string]any{"url": "http://h"}, map[string]any{"url": "http://h:0"},
		map[string]any{}, map[string]any{"url": "http://h:1", "proxyId": f.hpID}} {
		f.e.WantError(http.StatusBadRequest, "PUT", "/api/settings/proxy", body)
	}
	if got := string(f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies", nil).Body); got != before {
		t.Fatalf("the registry changed:\n%s\n%s", before, got)
	}
	if got := string(f.e.Want(http.StatusOK, "GET", "/api/v1/management/proxies/assignments", nil).Body); got != beforeA {
		t.Fatalf("the assignments changed:\n%s\n%s", beforeA, got)
	}

	// Bulk assignment, then bulk clear.
	r := f.e.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/bulk-assign", map[string]any{"scope": "provider", "scopeIds": []string{"pa", "pb", "pa"}, "proxyId": f.hpID}).Object(t)
	if r["updated"].(float64) != 2 {
		t.Fatalf("bulk: %v", r)
	}
	f.wantVia("pa", "http")
	f.wantVia("pb", "http")
	f.e.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/bulk-assign", map[string]any{"scope": "provider", "scopeIds": []string{"pa", "pb"}, "proxyId": nil})
	f.wantVia("pb", "direct")
}

// The test endpoint reports a dead proxy within its timeout, and a
// working one as working.
func TestProxyTest(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	start := time.Now()
	r := f.e.Want(http.StatusOK, "POST", "/api/settings/proxy/test", map[string]any{"url": "http://" + dead, "target": f.a.URL}).Object(t)
	if r["ok"] != false || r["error"] == "" || time.Since(start) > 10*time.Second {
		t.Fatalf("dead proxy: %v after %s", r, time.Since(start))
	}
	// A proxy that accepts but never answers: cut at the timeout asked.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start = time.Now()
	r = f.e.Want(http.StatusOK, "POST", "/api/settings/proxy/test", map[string]any{"url": "socks5://" + silent.Addr().String(), "target": f.a.URL, "timeoutMs": 500}).Object(t)
	if r["ok"] != false || r["error"] != "timed out" || time.Since(start) > 5*time.Second {
		t.Fatalf("silent proxy: %v after %s", r, time.Since(start))
	}
	r = f.e.Want(http.StatusOK, "POST", "/api/settings/proxy/test", map[string]any{"proxyId": f.spID, "target": f.a.URL}).Object(t)
	if r["ok"] != true || r["status"].(float64) != 200 || strings.Contains(r["proxy"].(string), f.password) {
		t.Fatalf("socks proxy test: %v", r)
	}
	r = f.e.Want(http.StatusOK, "POST", "/api/settings/proxy/test", map[string]any{"url": "socks5://alice:nope@" + f.sp.addr, "target": f.a.URL}).Object(t)
	if r["ok"] != false || strings.Contains(r["error"].(string), "nope") {
		t.Fatalf("wrong password: %v", r)
	}
	f.e.WantError(http.StatusBadRequest, "POST", "/api/settings/proxy/test", map[string]any{"url": "http://" + dead, "target": "file:///etc/passwd"})
	f.e.WantError(http.StatusBadRequest, "POST", "/api/settings/proxy/test", map[string]any{"url": "http://" + dead, "timeoutMs": 60000})
	f.e.WantError(http.StatusBadRequest, "POST", "/api/settings/proxy/test", map[string]any{})
}

// Who may not: an anonymous caller and a web page of another site.
func TestOnlyTheOperator(t *testing.T) {
	f := newFixture(t)
	anon := &http.Client{}
	for _, rq := range []struct{ method, path string }{
		{"GET", "/api/v1/management/proxies"}, {"POST", "/api/v1/management/proxies"}, {"PUT", "/api/v1/management/proxies/assignments"},
		{"GET", "/api/settings/proxy"}, {"POST", "/api/settings/proxy/test"}, {"GET", "/api/v1/management/proxies/health"},
	} {
		req, _ := http.NewRequest(rq.method, f.e.Srv.URL+rq.path, strings.NewReader(`{"name":"evil","type":"http","host":"evil","port":1}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous %s %s: %d", rq.method, rq.path, resp.StatusCode)
		}
	}
	// A page elsewhere, in the logged-in operator's browser.
	f.e.WantError(http.StatusForbidden, "PUT", "/api/settings/proxy", map[string]any{"url": "http://evil.example:8080"}, "Origin", "https://evil.example")
	if s := f.e.Want(http.StatusOK, "GET", "/api/settings/proxy", nil).Object(t); s["enabled"] != false {
		t.Fatalf("a cross-site request set the proxy: %v", s)
	}
}

// openReplica opens one gateway process over a shared database.
func openReplica(t *testing.T, db *sqldb.DB) *admintest.Env {
	t.Helper()
	return openWith(t, db, nil, logging.Discard())
}

// openWith opens a gateway over db whose upstream client is hc.
func openWith(t *testing.T, db *sqldb.DB, hc *http.Client, log *slog.Logger) *admintest.Env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = admintest.Password
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{HTTP: hc, DB: db, MasterKey: admintest.MasterKey, Clock: clock.Real{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	e := &admintest.Env{T: t, Srv: srv, DB: db, App: a, C: &http.Client{Jar: jar}}
	e.Run()
	e.Login()
	return e
}

// A change made through one replica reaches the other's upstream calls
// without a restart (the route store's epoch), on SQLite and PostgreSQL.
func TestReplicasFollow(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "omni.db")
			if dialect == "postgres" {
				dsn = testenv.Postgres(t)
			}
			db, err := sqldb.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			one, two := openReplica(t, db), openReplica(t, db)
			up, hp := startUpstream(t, "a"), startHTTPProxy(t, "carol", "replica-pass-1")
			one.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pa", "type": "openai", "base_url": up.URL + "/v1",
				"api_key": "sk-pa-0000000000", "models": []string{"m"}})
			id := one.Want(http.StatusCreated, "POST", "/api/v1/management/proxies", map[string]any{"name": "fwd", "type": "http",
				"host": "127.0.0.1", "port": port(t, hp.addr), "username": "carol", "password": "replica-pass-1"}).Object(t)["id"].(string)
			one.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/assignments", map[string]any{"scope": "global", "proxyId": id})
			testenv.Eventually(t, "the other replica's call goes through the proxy", func() bool {
				r := two.Do("POST", "/v1/chat/completions", admintest.Chat("pa/m"))
				return r.Status == http.StatusOK && carriedFrom(&hp.locals, up.last(t))
			})
			if got := two.Want(http.StatusOK, "GET", "/api/v1/management/proxies?id="+id, nil).Object(t); got["password"] != "********" {
				t.Fatalf("other replica shows %v", got)
			}
			one.Want(http.StatusOK, "PUT", "/api/settings/proxy", map[string]any{"proxyId": nil})
			testenv.Eventually(t, "the other replica's call goes direct again", func() bool {
				two.ChatText("pa/m")
				return !carriedFrom(&hp.locals, up.last(t))
			})
		})
	}
}

// An https proxy is spoken to over TLS (the gateway's trusted roots), and
// the modalities beyond chat (rerank here) use the same per-connection
// client as chat.
func TestHTTPSProxyAndOtherModalities(t *testing.T) {
	hp, roots := startHTTPSProxy(t, "dave", "tls-proxy-pass")
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hc := routeapp.UpstreamClient()
	hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	e := openWith(t, db, hc, logging.Discard())
	chat, rr := startUpstream(t, "a"), startUpstream(t, "r")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "pa", "type": "openai", "base_url": chat.URL + "/v1",
		"api_key": "sk-pa-0000000000", "models": []string{"m"}})
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "co", "type": "cohere", "base_url": rr.URL + "/v2",
		"api_key": "sk-co-0000000000", "models": []string{"rerank-x"}})
	id := e.Want(http.StatusCreated, "POST", "/api/v1/management/proxies", map[string]any{"name": "tls", "type": "https",
		"host": "127.0.0.1", "port": port(t, hp.addr), "username": "dave", "password": "tls-proxy-pass"}).Object(t)["id"].(string)

	e.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/bulk-assign", map[string]any{"scope": "provider", "scopeIds": []string{"pa", "co"}, "proxyId": id})
	e.ChatText("pa/m")
	if !carriedFrom(&hp.locals, chat.last(t)) {
		t.Fatal("chat did not go through the https proxy")
	}
	// So does the provider's connection test.
	before := chat.count()
	e.Want(http.StatusOK, "POST", "/api/providers/pa/test", map[string]any{})
	if chat.count() != before+1 || !carriedFrom(&hp.locals, chat.last(t)) {
		t.Fatal("the provider test did not go through the https proxy")
	}
	// The fake upstream answers in chat's shape, which rerank cannot
	// read: what matters is the way the call took.
	e.Do("POST", "/v1/rerank", map[string]any{"model": "co/rerank-x", "query": "q", "documents": []string{"a", "b"}})
	if !carriedFrom(&hp.locals, rr.last(t)) {
		t.Fatal("rerank did not go through the https proxy")
	}
	if r := e.Want(http.StatusOK, "POST", "/api/settings/proxy/test", map[string]any{"proxyId": id, "target": chat.URL}).Object(t); r["ok"] != true {
		t.Fatalf("https proxy test: %v", r)
	}
	// Unassigned: direct.
	e.Want(http.StatusOK, "PUT", "/api/v1/management/proxies/bulk-assign", map[string]any{"scope": "provider", "scopeIds": []string{"pa", "co"}, "proxyId": nil})
	e.ChatText("pa/m")
	if carriedFrom(&hp.locals, chat.last(t)) {
		t.Fatal("chat still went through the proxy")
	}
}
