package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/routetest"
)

// keyClient sends requests without cookies: only the header it is given
// authenticates them.
func keyClient(e *env, status int, method, path string, body any, hdr ...string) admintest.Resp {
	e.T.Helper()
	r := routetest.Send(e.T, &http.Client{}, method, e.Srv.URL+path, body, hdr...)
	if r.Status != status {
		e.T.Fatalf("%s %s %v: status %d, want %d; body %s", method, path, hdr, r.Status, status, r.Body)
	}
	return r
}

// A stored key with the manage scope administers the gateway with the
// Bearer header alone; every other key (stored without the scope,
// registered, from the configuration file, revoked, unknown) is refused.
func TestManagementKey(t *testing.T) {
	const configKey = "sk-config-file-key-0123456789"
	e := newEnv(t, func(c *config.Config) { c.Route.APIKeys = []config.Secret{configKey} })
	e.Login()
	manageID, manage := e.CreateKey(map[string]any{"name": "automation", "scopes": []string{"manage"}})
	_, plain := e.CreateKey(map[string]any{"name": "plain"})
	_, issuer := e.CreateKey(map[string]any{"name": "issuer", "scopes": []string{"issue"}})
	_, mcp := e.CreateKey(map[string]any{"name": "mcp only", "scopes": []string{"mcp"}})
	reg := e.Want(http.StatusCreated, "POST", "/api/v1/registered-keys", map[string]any{"name": "reg"}).Object(t)["key"].(string)

	// Unknown scopes are refused, on creation and on change.
	e.WantError(http.StatusBadRequest, "POST", "/api/keys", map[string]any{"name": "x", "scopes": []string{"admin"}})
	e.WantError(http.StatusBadRequest, "PATCH", "/api/keys/"+manageID, map[string]any{"scopes": []string{"manage", "root"}})
	got := e.Want(http.StatusOK, "GET", "/api/keys/"+manageID, nil).Object(t)
	if sc, _ := got["scopes"].([]any); len(sc) != 1 || sc[0] != "manage" {
		t.Fatalf("scopes after a refused change: %v", got["scopes"])
	}

	// The management key alone: create, list, read and delete a provider.
	provider := map[string]any{"id": "p1", "type": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "sk-upstream-secret-1"}
	keyClient(e, http.StatusCreated, "POST", "/api/providers", provider, admintest.Bearer(manage)...)
	list := keyClient(e, http.StatusOK, "GET", "/api/providers", nil, admintest.Bearer(manage)...)
	if !strings.Contains(string(list.Body), `"p1"`) {
		t.Fatalf("provider list: %s", list.Body)
	}
	keyClient(e, http.StatusNoContent, "DELETE", "/api/providers/p1", nil, admintest.Bearer(manage)...)
	keyClient(e, http.StatusNotFound, "GET", "/api/providers/p1", nil, admintest.Bearer(manage)...)
	// … and the routes of feature modules (feature.Admin) and uploads.
	keyClient(e, http.StatusOK, "GET", "/api/resilience", nil, admintest.Bearer(manage)...)
	keyClient(e, http.StatusOK, "GET", "/api/db-backups", nil, admintest.Bearer(manage)...)
	// A management key sees every registered key, as the login does.
	keyClient(e, http.StatusOK, "GET", "/api/v1/registered-keys", nil, admintest.Bearer(manage)...)

	// Without the cookie and without a key: the login is required.
	keyClient(e, http.StatusUnauthorized, "GET", "/api/providers", nil)
	for _, c := range []struct {
		name, key string
		status    int
	}{
		{"no scope", plain, http.StatusForbidden},
		{"issue scope", issuer, http.StatusForbidden},
		{"mcp scope", mcp, http.StatusForbidden},
		{"registered", reg, http.StatusForbidden},
		{"configuration file", configKey, http.StatusForbidden},
		{"unknown", "sk-omni-not-a-key", http.StatusUnauthorized},
	} {
		for _, m := range []struct{ method, path string }{{"GET", "/api/providers"}, {"POST", "/api/providers"}, {"GET", "/api/compliance/audit-log"}} {
			var body any
			if m.method == "POST" {
				body = provider
			}
			r := keyClient(e, c.status, m.method, m.path, body, admintest.Bearer(c.key)...)
			if !strings.Contains(string(r.Body), `"message"`) {
				t.Fatalf("%s: %s", c.name, r.Body)
			}
		}
	}
	// A key is judged alone, even with a valid cookie next to it.
	e.WantError(http.StatusUnauthorized, "GET", "/api/providers", nil, admintest.Bearer("sk-omni-not-a-key")...)
	e.WantError(http.StatusForbidden, "GET", "/api/providers", nil, admintest.Bearer(plain)...)

	// Which browser checks apply to a key: not the Host (a script may use
	// any name: the key is no credential a browser adds by itself), but
	// the Origin and Sec-Fetch-Site of a page, and the JSON body type.
	keyClient(e, http.StatusOK, "GET", "/api/providers", nil, append(admintest.Bearer(manage), "Host", "gateway.example.com")...)
	keyClient(e, http.StatusForbidden, "GET", "/api/providers", nil, append(admintest.Bearer(manage), "Origin", "https://evil.example")...)
	keyClient(e, http.StatusForbidden, "GET", "/api/providers", nil, append(admintest.Bearer(manage), "Sec-Fetch-Site", "cross-site")...)
	keyClient(e, http.StatusUnsupportedMediaType, "POST", "/api/providers", `{"id":"p2","type":"openai"}`,
		append(admintest.Bearer(manage), "Content-Type", "text/plain")...)
	// A rebinding page's Host without a key still gets nothing.
	e.WantError(http.StatusMisdirectedRequest, "GET", "/api/providers", nil, "Host", "evil.example")

	// Revoked: deleted through the API, refused at once.
	e.Want(http.StatusNoContent, "DELETE", "/api/keys/"+manageID, nil)
	keyClient(e, http.StatusUnauthorized, "GET", "/api/providers", nil, admintest.Bearer(manage)...)
}

// With the login off, management is open to requests without a key, but
// a request that sends a key is still judged by it: a page cannot pass a
// made-up key to get past the Host check.
func TestManagementKeyLoginOff(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	_, manage := e.CreateKey(map[string]any{"name": "automation", "scopes": []string{"manage"}})
	e.Want(http.StatusOK, "PUT", "/api/settings/require-login", map[string]any{"requireLogin": false})
	keyClient(e, http.StatusOK, "GET", "/api/providers", nil)
	keyClient(e, http.StatusUnauthorized, "GET", "/api/providers", nil, append(admintest.Bearer("sk-omni-made-up"), "Host", "evil.example")...)
	keyClient(e, http.StatusMisdirectedRequest, "GET", "/api/providers", nil, "Host", "evil.example")
	keyClient(e, http.StatusOK, "GET", "/api/providers", nil, admintest.Bearer(manage)...)
}
