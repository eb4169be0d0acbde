package settings_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	"github.com/omniedge/omni/internal/route/routetest"
)

// stored reads a setting straight from the database.
func stored(t *testing.T, db *sqldb.DB, key string) string {
	t.Helper()
	var v string
	if err := db.QueryRow(context.Background(), `SELECT value FROM route_settings WHERE key = ?`, key).Scan(&v); err != nil {
		return "<unset>"
	}
	return v
}

func object(t *testing.T, r routetest.Resp) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("answer %s is not a JSON object", r.Body)
	}
	return m
}

// The general document: defaults, PATCH merges, PUT replaces (missing
// fields take defaults), under the stored keys the MCP and A2A servers
// read; a bad document changes nothing and names the field.
func TestGeneralSettings(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.WantError(http.StatusUnauthorized, "GET", "/api/settings", nil)
	e.WantError(http.StatusUnauthorized, "PATCH", "/api/settings", map[string]any{"mcpEnabled": true})
	e.Login()

	g := object(t, e.Want(http.StatusOK, "GET", "/api/settings", nil))
	if g["requireLogin"] != true || g["mcpEnabled"] != false || g["mcpTransport"] != "streamable-http" || g["a2aEnabled"] != false {
		t.Fatalf("defaults: %v", g)
	}
	links, _ := g["links"].(map[string]any)
	if links["ipFilter"] != "/api/settings/ip-filter" || links["usageRetention"] != "/api/settings/usage-retention" {
		t.Fatalf("links: %v", g["links"])
	}

	g = object(t, e.Want(http.StatusOK, "PATCH", "/api/settings", map[string]any{"mcpEnabled": true, "mcpTransport": "sse"}))
	if g["mcpEnabled"] != true || g["mcpTransport"] != "sse" || g["a2aEnabled"] != false || g["requireLogin"] != true {
		t.Fatalf("after PATCH: %v", g)
	}
	if v := stored(t, e.DB, "mcp_enabled"); v != "true" {
		t.Fatalf("mcp_enabled stored %q", v)
	}
	if v := stored(t, e.DB, "mcp_transport"); v != "sse" {
		t.Fatalf("mcp_transport stored %q", v)
	}
	e.Want(http.StatusOK, "PATCH", "/api/settings", map[string]any{"a2aEnabled": true})
	if v := stored(t, e.DB, "a2a_enabled"); v != "true" {
		t.Fatalf("a2a_enabled stored %q", v)
	}
	if v := stored(t, e.DB, "mcp_enabled"); v != "true" {
		t.Fatalf("PATCH of another field changed mcp_enabled to %q", v)
	}

	// Refused documents change nothing, and the error names the field.
	for _, c := range []struct {
		method, body, field string
	}{
		{"PATCH", `{"mcpEnabled": false, "colour": "blue"}`, "colour"},
		{"PUT", `{"mcpEnabled": false, "colour": "blue"}`, "colour"},
		{"PATCH", `{"mcpEnabled": false, "mcpTransport": "websocket"}`, "mcpTransport"},
		{"PATCH", `{"mcpEnabled": "yes"}`, "mcpEnabled"},
		{"PUT", `{"a2aEnabled": null}`, "a2aEnabled"},
		{"PATCH", `[]`, ""},
		{"PATCH", `{"mcpEnabled": false} {}`, ""},
	} {
		msg := e.WantError(http.StatusBadRequest, c.method, "/api/settings", c.body, "Content-Type", "application/json")
		if !strings.Contains(msg, c.field) {
			t.Errorf("%s %s: error %q does not name %q", c.method, c.body, msg, c.field)
		}
	}
	big := `{"mcpEnabled": false, "links": "` + strings.Repeat("x", 70<<10) + `"}`
	e.WantError(http.StatusRequestEntityTooLarge, "PATCH", "/api/settings", big, "Content-Type", "application/json")
	if stored(t, e.DB, "mcp_enabled") != "true" || stored(t, e.DB, "mcp_transport") != "sse" {
		t.Fatal("a refused document changed a setting")
	}

	// GET, modify, PUT round-trips (links are read-only and ignored).
	g = object(t, e.Want(http.StatusOK, "GET", "/api/settings", nil))
	g["mcpEnabled"] = false
	g = object(t, e.Want(http.StatusOK, "PUT", "/api/settings", g))
	if g["mcpEnabled"] != false || g["a2aEnabled"] != true || g["mcpTransport"] != "sse" {
		t.Fatalf("after round-trip PUT: %v", g)
	}
	// PUT replaces: what it leaves out takes its default.
	g = object(t, e.Want(http.StatusOK, "PUT", "/api/settings", map[string]any{"mcpEnabled": true}))
	if g["mcpEnabled"] != true || g["a2aEnabled"] != false || g["mcpTransport"] != "streamable-http" || g["requireLogin"] != true {
		t.Fatalf("after PUT: %v", g)
	}

	// A gateway key is not a login: without the manage scope it is refused.
	anon := &http.Client{}
	_, raw := e.CreateKey(map[string]any{"name": "client"})
	for _, c := range []struct{ method, path string }{{"PATCH", "/api/settings"}, {"PUT", "/api/settings/ip-filter"}, {"POST", "/api/shutdown"}, {"GET", "/api/system-info"}} {
		if r := routetest.Send(t, anon, c.method, e.Srv.URL+c.path, map[string]any{"enabled": false}, admintest.Bearer(raw)...); r.Status != http.StatusForbidden {
			t.Fatalf("%s %s with a gateway key: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}

	// requireLogin is the login setting itself.
	e.Want(http.StatusOK, "PATCH", "/api/settings", map[string]any{"requireLogin": false})
	if r := routetest.Send(t, anon, "GET", e.Srv.URL+"/api/settings/require-login", nil); !strings.Contains(string(r.Body), `"requireLogin":false`) {
		t.Fatalf("require-login after PATCH: %s", r.Body)
	}
	if r := routetest.Send(t, anon, "GET", e.Srv.URL+"/api/settings", nil); r.Status != http.StatusOK {
		t.Fatalf("GET without login once login is not required: %d", r.Status)
	}
}

// A web page of another site cannot change the settings with the
// operator's cookie: no JSON body type, or a foreign Origin, is refused.
func TestSettingsRefuseCrossSite(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	e.WantError(http.StatusUnsupportedMediaType, "PATCH", "/api/settings", `{"mcpEnabled": true}`, "Content-Type", "text/plain")
	e.WantError(http.StatusForbidden, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"0.0.0.0/0"}},
		"Origin", "https://evil.example")
	e.WantError(http.StatusForbidden, "PATCH", "/api/settings", map[string]any{"mcpEnabled": true}, "Sec-Fetch-Site", "cross-site")
	if stored(t, e.DB, "mcp_enabled") != "<unset>" || stored(t, e.DB, "ip_filter") != "<unset>" {
		t.Fatal("a cross-site request changed a setting")
	}
}

// from returns a client whose connections leave from the local address
// ip (any address of 127/8 reaches the loopback listener on Linux),
// keeping cookies.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func status(t *testing.T, c *http.Client, method, url string, body any, hdr ...string) (int, string) {
	t.Helper()
	r := routetest.Send(t, c, method, url, body, hdr...)
	return r.Status, string(r.Body)
}

// wantRefused asserts a 403 JSON error from the IP filter.
func wantRefused(t *testing.T, c *http.Client, method, url string) {
	t.Helper()
	st, body := status(t, c, method, url, nil)
	var eb httpx.ErrorBody
	if st != http.StatusForbidden || json.Unmarshal([]byte(body), &eb) != nil || eb.Error.Code != "ip_blocked" {
		t.Fatalf("%s %s: %d %s, want the IP filter's 403", method, url, st, body)
	}
}

func wantPassed(t *testing.T, c *http.Client, method, url string) {
	t.Helper()
	if st, body := status(t, c, method, url, nil); st == http.StatusForbidden {
		t.Fatalf("%s %s: refused: %s", method, url, body)
	}
}

// The IP filter's document is validated and normalised.
func TestIPFilterDocument(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.WantError(http.StatusUnauthorized, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"127.0.0.2"}})
	e.Login()
	f := object(t, e.Want(http.StatusOK, "GET", "/api/settings/ip-filter", nil))
	if f["enabled"] != false {
		t.Fatalf("default filter: %v", f)
	}
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"enabled": true, "block": []string{"10.0.0.0/8", "10.0.0.300"}}, `block[1] "10.0.0.300"`},
		{map[string]any{"enabled": true, "allow": []string{"2001:db8::/129"}}, `allow[0] "2001:db8::/129"`},
		{map[string]any{"enabled": true, "allow": []string{""}}, `allow[0]`},
		{map[string]any{"enabled": true, "applyTo": []string{"everything"}}, `"everything"`},
		{map[string]any{"enabled": true, "mode": "allow"}, `"mode"`},
		{map[string]any{"enabled": true, "applyTo": []string{}}, `"applyTo"`},
		{map[string]any{"block": []string{"10.0.0.1"}}, `"enabled"`},
		{map[string]any{"enabled": "yes"}, `"enabled"`},
		{map[string]any{"enabled": true, "block": "10.0.0.1"}, `"block"`},
		{map[string]any{"enabled": true, "block": make([]string, 1025)}, `"block" has 1025 entries`},
	} {
		msg := e.WantError(http.StatusBadRequest, "PUT", "/api/settings/ip-filter", c.body)
		if !strings.Contains(msg, c.field) {
			t.Errorf("%v: error %q does not name %s", c.body, msg, c.field)
		}
	}
	if stored(t, e.DB, "ip_filter") != "<unset>" {
		t.Fatal("a refused filter was stored")
	}
	f = object(t, e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": false,
		"allow": []string{"192.0.2.7", "2001:db8::1", "10.1.2.3/8", "10.0.0.0/8"}, "block": []string{" 198.51.100.0/24 "}}))
	want := `{"enabled":false,"allow":["192.0.2.7/32","2001:db8::1/128","10.0.0.0/8"],"block":["198.51.100.0/24"],"applyTo":["gateway","management"]}`
	if b, _ := json.Marshal(f); !jsonEqual(t, string(b), want) {
		t.Fatalf("normalised filter %s, want %s", b, want)
	}
	if got := e.Want(http.StatusOK, "GET", "/api/settings/ip-filter", nil); !jsonEqual(t, string(got.Body), want) {
		t.Fatalf("GET after PUT: %s", got.Body)
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		t.Fatalf("not JSON: %s / %s", a, b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// The filter applies to real requests by their source address: a block
// entry refuses 127.0.0.2 while 127.0.0.1 passes, on the scopes named;
// with an allow list only listed addresses pass the gateway; the
// gateway endpoints under /api/ (Ollama's) count as the gateway.
func TestIPFilterRefusesBySourceAddress(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	one, two := from("127.0.0.1"), from("127.0.0.2")
	u := e.Srv.URL
	put := func(f map[string]any) {
		t.Helper()
		e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", f)
	}

	put(map[string]any{"enabled": true, "block": []string{"127.0.0.2"}})
	for _, p := range []string{"/v1/models", "/api/tags", "/api/settings", "/api/init", "/dashboard/", "/api/no-such-thing"} {
		wantRefused(t, two, "GET", u+p)
		wantPassed(t, one, "GET", u+p)
	}
	wantRefused(t, two, "POST", u+"/api/auth/login")

	// Disabled: nothing refused.
	put(map[string]any{"enabled": false, "block": []string{"127.0.0.2"}})
	wantPassed(t, two, "GET", u+"/v1/models")

	// The gateway only.
	put(map[string]any{"enabled": true, "block": []string{"127.0.0.2/32"}, "applyTo": []string{"gateway"}})
	wantRefused(t, two, "GET", u+"/v1/models")
	wantRefused(t, two, "GET", u+"/api/tags")
	wantPassed(t, two, "GET", u+"/api/init")
	wantPassed(t, two, "GET", u+"/api/settings")

	// The management side only.
	put(map[string]any{"enabled": true, "block": []string{"127.0.0.2/32"}, "applyTo": []string{"management"}})
	wantPassed(t, two, "GET", u+"/v1/models")
	wantPassed(t, two, "GET", u+"/api/tags")
	wantRefused(t, two, "GET", u+"/api/init")
	wantRefused(t, two, "GET", u+"/")

	// An allow list: only listed addresses reach the gateway; block wins
	// over allow.
	put(map[string]any{"enabled": true, "allow": []string{"127.0.0.1"}, "applyTo": []string{"gateway"}})
	wantRefused(t, two, "GET", u+"/v1/models")
	wantPassed(t, one, "GET", u+"/v1/models")
	put(map[string]any{"enabled": true, "allow": []string{"127.0.0.0/8"}, "block": []string{"127.0.0.2"}, "applyTo": []string{"gateway"}})
	wantRefused(t, two, "GET", u+"/v1/models")
	wantPassed(t, from("127.0.0.3"), "GET", u+"/v1/models")
}

// An operator cannot lock themselves out by accident: a filter that
// would refuse the caller's own management requests is refused (409),
// and the gateway host (loopback) keeps the management side under any
// allow list or broad block, losing it only to a block entry that names
// loopback addresses.
func TestIPFilterLockout(t *testing.T) {
	e := admintest.NewEnv(t, func(c *config.Config) { c.TrustProxy = "127.0.0.1/32" })
	e.Login()
	u := e.Srv.URL

	// From the gateway host, a filter refusing its own address.
	msg := e.WantError(http.StatusConflict, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"127.0.0.1"}})
	if !strings.Contains(msg, "127.0.0.1") {
		t.Fatalf("lockout message %q does not name the address", msg)
	}
	// An operator behind the trusted proxy, at 203.0.113.7: an allow list
	// without them is refused; with them, accepted.
	remote := []string{"X-Forwarded-For", "203.0.113.7"}
	e.WantError(http.StatusConflict, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "allow": []string{"10.0.0.0/8"}}, remote...)
	e.WantError(http.StatusConflict, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"203.0.113.0/24"}, "applyTo": []string{"management"}}, remote...)
	if stored(t, e.DB, "ip_filter") != "<unset>" {
		t.Fatal("a lock-out filter was stored")
	}
	e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "allow": []string{"203.0.113.7", "10.0.0.0/8"}}, remote...)
	// Someone else behind the proxy is refused; the gateway host keeps
	// the management side though it is not on the allow list, and loses
	// the gateway side.
	one := from("127.0.0.1")
	if st, _ := status(t, one, "GET", u+"/api/init", nil, "X-Forwarded-For", "198.51.100.9"); st != http.StatusForbidden {
		t.Fatalf("a client not allowed, through the trusted proxy: %d", st)
	}
	two := from("127.0.0.2")
	wantPassed(t, two, "GET", u+"/api/init")
	wantRefused(t, two, "GET", u+"/v1/models")
	// A broad block does not take the management side from the host (so
	// the host may set it), an entry naming loopback does.
	e.WantError(http.StatusConflict, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"0.0.0.0/0", "::/0"}}, remote...)
	e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"0.0.0.0/0", "::/0"}})
	wantPassed(t, two, "GET", u+"/api/init")
	wantRefused(t, two, "GET", u+"/v1/models")
	e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"127.0.0.2"}})
	wantRefused(t, two, "GET", u+"/api/init")
}

// Without a trusted proxy, X-Forwarded-For is not believed: a client
// cannot pose as an allowed address, nor dodge a block.
func TestIPFilterIgnoresUntrustedForwardedFor(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	e.Login()
	e.Want(http.StatusOK, "PUT", "/api/settings/ip-filter", map[string]any{"enabled": true, "allow": []string{"203.0.113.7"}, "block": []string{"127.0.0.2"}})
	two := from("127.0.0.2")
	if st, _ := status(t, two, "GET", e.Srv.URL+"/v1/models", nil, "X-Forwarded-For", "203.0.113.7"); st != http.StatusForbidden {
		t.Fatalf("a forged X-Forwarded-For passed: %d", st)
	}
	if st, _ := status(t, from("127.0.0.3"), "GET", e.Srv.URL+"/v1/models", nil, "X-Forwarded-For", "203.0.113.7"); st != http.StatusForbidden {
		t.Fatalf("a forged X-Forwarded-For got onto the allow list: %d", st)
	}
}

// replica opens a gateway on the database file path and runs it until
// the test ends.
func replica(t *testing.T, path string, d routeapp.Deps, mutate ...func(*config.Config)) (*routeapp.App, *httptest.Server) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = admintest.Password
	for _, m := range mutate {
		m(&cfg)
	}
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d.DB, d.MasterKey, d.Clock, d.Log = db, admintest.MasterKey, clock.Real{}, logging.Discard()
	a, err := routeapp.Open(context.Background(), &cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return a, srv
}

// Two gateways on one database (a SQLite file, and PostgreSQL): a filter
// changed through one refuses on the other within a second, and lifting
// it does too.
func TestIPFilterAcrossReplicas(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { acrossReplicas(t, filepath.Join(t.TempDir(), "omni.db")) })
	t.Run("postgres", func(t *testing.T) { acrossReplicas(t, testenv.Postgres(t)) })
}

func acrossReplicas(t *testing.T, path string) {
	_, a := replica(t, path, routeapp.Deps{})
	_, b := replica(t, path, routeapp.Deps{})
	op := from("127.0.0.1")
	if st, body := status(t, op, "POST", a.URL+"/api/auth/login", map[string]string{"password": admintest.Password}); st != http.StatusOK {
		t.Fatalf("login: %d %s", st, body)
	}
	two := from("127.0.0.2")
	wantPassed(t, two, "GET", b.URL+"/v1/models")

	if st, body := status(t, op, "PUT", a.URL+"/api/settings/ip-filter", map[string]any{"enabled": true, "block": []string{"127.0.0.2"}}); st != http.StatusOK {
		t.Fatalf("PUT: %d %s", st, body)
	}
	wantRefused(t, two, "GET", a.URL+"/v1/models") // at once where it was made
	took := testenv.EventuallyWithin(t, "the other replica refuses 127.0.0.2", time.Second, func() bool {
		st, _ := status(t, two, "GET", b.URL+"/v1/models", nil)
		return st == http.StatusForbidden
	})
	t.Logf("the other replica refused after %v", took)
	wantPassed(t, from("127.0.0.1"), "GET", b.URL+"/v1/models")

	if st, body := status(t, op, "PUT", a.URL+"/api/settings/ip-filter", map[string]any{"enabled": false}); st != http.StatusOK {
		t.Fatalf("PUT: %d %s", st, body)
	}
	testenv.EventuallyWithin(t, "the other replica lets 127.0.0.2 through again", time.Second, func() bool {
		st, _ := status(t, two, "GET", b.URL+"/v1/models", nil)
		return st != http.StatusForbidden
	})
}

// /api/init is public and says what a first-run page needs;
// /api/system-info needs the login; neither shows a secret of the
// configuration, the database or the keys.
func TestInitAndSystemInfo(t *testing.T) {
	const (
		dsnSecret   = "dsn-password-4f1c"
		redisSecret = "redis-password-9a7b"
		keySecret   = "sk-config-key-77aa31"
		provSecret  = "sk-provider-5e5e5e"
	)
	up := admintest.NewUpstream(t, "up")
	e := admintest.NewEnv(t, func(c *config.Config) {
		c.Database = config.Secret("postgres://omni:" + dsnSecret + "@db.internal:5432/omni")
		c.Redis = config.Secret("redis://:" + redisSecret + "@cache.internal:6379/0")
		c.Route.APIKeys = []config.Secret{keySecret}
		c.Route.Providers = []config.RouteProvider{{ID: "up", Type: "openai-compatible", BaseURL: up.URL, APIKeys: []config.Secret{provSecret}, Models: []string{"m"}}}
	})
	anon := &http.Client{}
	in := object(t, routetest.Send(t, anon, "GET", e.Srv.URL+"/api/init", nil))
	if in["hasPassword"] != true || in["setupRequired"] != false || in["requireLogin"] != true || in["version"] != "dev" {
		t.Fatalf("init: %v", in)
	}
	if p, _ := in["products"].(map[string]any); p["route"] != true {
		t.Fatalf("init products: %v", in["products"])
	}
	e.WantError(http.StatusUnauthorized, "GET", "/api/system-info", nil)
	e.Login()
	e.CreateKey(map[string]any{"name": "stored"})
	r := e.Want(http.StatusOK, "GET", "/api/system-info", nil)
	si := object(t, r)
	counts, _ := si["counts"].(map[string]any)
	db, _ := si["database"].(map[string]any)
	rt, _ := si["runtime"].(map[string]any)
	if counts["providers"] != 1.0 || counts["keys"] != 2.0 || db["dialect"] != "sqlite" || si["goVersion"] == "" || si["os"] == "" ||
		rt["goroutines"] == nil || rt["heapAllocBytes"] == nil || si["uptimeSeconds"] == nil {
		t.Fatalf("system-info: %s", r.Body)
	}
	if red, _ := si["redis"].(map[string]any); red["enabled"] != false {
		t.Fatalf("system-info redis: %v", si["redis"])
	}
	secrets := []string{dsnSecret, redisSecret, keySecret, provSecret, admintest.Password, string(admintest.MasterKey), "db.internal", "cache.internal"}
	for _, p := range []string{"/api/system-info", "/api/init", "/api/settings", "/api/settings/ip-filter"} {
		body := string(e.Want(http.StatusOK, "GET", p, nil).Body)
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows %q: %s", p, s, body)
			}
		}
	}
}

// A fresh gateway without a password says setup is required, and how.
func TestInitBeforeSetup(t *testing.T) {
	_, srv := replica(t, filepath.Join(t.TempDir(), "fresh.db"), routeapp.Deps{Version: "1.2.3", Products: []string{"edge", "route"}},
		func(c *config.Config) { c.Route.InitialPassword = "" })
	in := object(t, routetest.Send(t, &http.Client{}, "GET", srv.URL+"/api/init", nil))
	p, _ := in["products"].(map[string]any)
	if in["hasPassword"] != false || in["setupRequired"] != true || in["setup"] == nil || in["version"] != "1.2.3" || p["edge"] != true {
		t.Fatalf("init before setup: %v", in)
	}
}

// lifecycleEnv is a gateway whose shutdown and restart hooks record
// their calls; each hook waits (at most 5 s) until the test has read the
// answer, so a hook running before the answer was sent is seen.
type lifecycleEnv struct {
	url      string
	calls    atomic.Int32
	answered chan struct{}
	late     atomic.Bool // a hook ran and the answer never came
}

func newLifecycle(t *testing.T, hooks bool) *lifecycleEnv {
	l := &lifecycleEnv{answered: make(chan struct{}, 8)}
	hook := func() {
		l.calls.Add(1)
		select {
		case <-l.answered:
		case <-time.After(5 * time.Second):
			l.late.Store(true)
		}
	}
	d := routeapp.Deps{}
	if hooks {
		d.Shutdown, d.Restart = hook, hook
	}
	_, srv := replica(t, filepath.Join(t.TempDir(), "omni.db"), d)
	l.url = srv.URL
	return l
}

// POST /api/shutdown and /api/restart answer 202 and then call the
// process's hook; nothing a web page of another site, an anonymous
// caller or a gateway key holder sends reaches the hook.
func TestShutdownAndRestart(t *testing.T) {
	l := newLifecycle(t, true)
	c := from("127.0.0.1")
	for _, path := range []string{"/api/shutdown", "/api/restart"} {
		if st, _ := status(t, c, "POST", l.url+path, nil, "Content-Type", "application/json"); st != http.StatusUnauthorized {
			t.Fatalf("%s without login: %d", path, st)
		}
	}
	if st, body := status(t, c, "POST", l.url+"/api/auth/login", map[string]string{"password": admintest.Password}); st != http.StatusOK {
		t.Fatalf("login: %d %s", st, body)
	}
	// What a page of another site can send with the operator's cookie.
	for _, hdr := range [][]string{
		{"Content-Type", "text/plain"},
		{"Content-Type", "application/x-www-form-urlencoded"},
		{"Content-Type", "application/json", "Origin", "https://evil.example"},
		{"Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"},
		{"Content-Type", "application/json", "Host", "evil.example"},
	} {
		for _, path := range []string{"/api/shutdown", "/api/restart"} {
			req, _ := http.NewRequest("POST", l.url+path, strings.NewReader(""))
			for i := 0; i+1 < len(hdr); i += 2 {
				if hdr[i] == "Host" {
					req.Host = hdr[i+1]
				} else {
					req.Header.Set(hdr[i], hdr[i+1])
				}
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("%s with %v: %d", path, hdr, resp.StatusCode)
			}
		}
	}
	if n := l.calls.Load(); n != 0 {
		t.Fatalf("a refused request called the hook %d times", n)
	}
	for i, path := range []string{"/api/shutdown", "/api/restart"} {
		r := routetest.Send(t, c, "POST", l.url+path, nil, "Content-Type", "application/json")
		if r.Status != http.StatusAccepted || !strings.Contains(string(r.Body), `"ok":true`) {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		l.answered <- struct{}{}
		testenv.Eventually(t, fmt.Sprintf("the hook is called for %s", path), func() bool { return l.calls.Load() == int32(i+1) })
	}
	if l.late.Load() {
		t.Fatal("a hook ran before its answer reached the client")
	}
}

// Without hooks (a gateway embedded without a process to control) the
// endpoints answer 501.
func TestShutdownWithoutHook(t *testing.T) {
	l := newLifecycle(t, false)
	c := from("127.0.0.1")
	status(t, c, "POST", l.url+"/api/auth/login", map[string]string{"password": admintest.Password})
	if st, body := status(t, c, "POST", l.url+"/api/shutdown", nil, "Content-Type", "application/json"); st != http.StatusNotImplemented {
		t.Fatalf("shutdown without a hook: %d %s", st, body)
	}
}
