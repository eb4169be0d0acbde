package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/mcp"
	"github.com/omniedge/omni/internal/route/store"
)

// gateway is a whole gateway with a provider p answering "hi from up",
// logged in to the dashboard.
type gateway struct {
	*admintest.Env
	st *store.Store
}

func openGateway(t *testing.T) *gateway {
	t.Helper()
	e := admintest.Running(t, nil)
	up := admintest.NewUpstream(t, "up")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-p-upstream-key"})
	st, err := store.New(context.Background(), e.DB, admintest.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{Env: e, st: st}
}

// configure stores the MCP settings, as PATCH /api/settings does.
func (g *gateway) configure(enabled bool, transport string) {
	g.T.Helper()
	ctx := context.Background()
	v := "false"
	if enabled {
		v = "true"
	}
	if err := g.st.SetSetting(ctx, mcp.SettingEnabled, v); err != nil {
		g.T.Fatal(err)
	}
	if err := g.st.SetSetting(ctx, mcp.SettingTransport, transport); err != nil {
		g.T.Fatal(err)
	}
}

func connect(t *testing.T, tr sdk.Transport) *sdk.ClientSession {
	t.Helper()
	// The context of Connect is the session's (the SSE stream's request).
	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool and decodes its JSON answer; failed is the tool's
// isError.
func call(t *testing.T, cs *sdk.ClientSession, name string, args map[string]any) (out map[string]any, text string, failed bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(res.Content) == 0 {
		t.Fatalf("%s: no content", name)
	}
	text = res.Content[0].(*sdk.TextContent).Text
	if !res.IsError {
		if err := json.Unmarshal([]byte(text), &out); err != nil {
			t.Fatalf("%s: answer %q is not JSON: %v", name, text, err)
		}
	}
	return out, text, res.IsError
}

func toolNames(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
		if tl.InputSchema == nil {
			t.Errorf("tool %s has no input schema", tl.Name)
		}
	}
	return names
}

// exercise runs the client flow every transport must serve: the tool
// list, list-models (the same ids as /v1/models), a chat through the
// router, the usage summary counting it and the audit rows of the calls.
func (g *gateway) exercise(t *testing.T, cs *sdk.ClientSession, transport string) {
	names := toolNames(t, cs)
	for _, want := range []string{"omniroute_list_models", "omniroute_chat", "omniroute_usage_summary", "omniroute_provider_health",
		"omniroute_budget_status", "omniroute_list_keys"} {
		if !admintest.Contains(names, want) {
			t.Errorf("tools %v lack %s", names, want)
		}
	}

	models, _, failed := call(t, cs, "omniroute_list_models", nil)
	if failed {
		t.Fatal("list models failed")
	}
	var ids []string
	for _, m := range models["models"].([]any) {
		ids = append(ids, m.(map[string]any)["id"].(string))
	}
	if want := g.ModelIDs(); strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("list models %v, /v1/models %v", ids, want)
	}

	ans, text, failed := call(t, cs, "omniroute_chat", map[string]any{"model": "p/m", "messages": []map[string]string{{"role": "user", "content": "hello"}}})
	if failed || ans["content"] != "hi from up" {
		t.Fatalf("chat: %s", text)
	}
	if _, text, failed := call(t, cs, "omniroute_chat", map[string]any{"model": "p/m", "messages": []map[string]string{}}); !failed {
		t.Errorf("a chat without messages answered %s", text)
	}

	testenv.Eventually(t, "the usage summary counts the chat", func() bool {
		u, _, failed := call(t, cs, "omniroute_usage_summary", map[string]any{"period": "1h"})
		return !failed && u["totals"].(map[string]any)["requests"].(float64) >= 1
	})

	health, text, failed := call(t, cs, "omniroute_provider_health", nil)
	if failed || health["breakers"] == nil {
		t.Errorf("provider health: %s", text)
	}

	r := g.Want(http.StatusOK, "GET", "/api/mcp/audit?tool=omniroute_chat", nil).Object(t)
	entries := r["entries"].([]any)
	if len(entries) != 2 || r["total"].(float64) != 2 {
		t.Fatalf("chat audit %v", r)
	}
	newest, oldest := entries[0].(map[string]any), entries[1].(map[string]any)
	if newest["success"] != false || oldest["success"] != true || oldest["transport"] != transport || oldest["caller"] != "session" {
		t.Errorf("audit entries %v", entries)
	}
	if !strings.Contains(oldest["arguments"].(string), `"hello"`) {
		t.Errorf("audit arguments %v", oldest["arguments"])
	}
	failedOnly := g.Want(http.StatusOK, "GET", "/api/mcp/audit?success=false&limit=10", nil).Object(t)
	if failedOnly["total"].(float64) != 1 {
		t.Errorf("failed calls %v", failedOnly)
	}
	stats := g.Want(http.StatusOK, "GET", "/api/mcp/audit/stats", nil).Object(t)
	if stats["total"].(float64) < 4 || stats["failures"].(float64) != 1 || len(stats["topTools"].([]any)) == 0 {
		t.Errorf("stats %v", stats)
	}
	status := g.Want(http.StatusOK, "GET", "/api/mcp/status", nil).Object(t)
	if status["online"] != true || status["transport"] != transport || status["lastCallAt"] == nil ||
		status["successRate24h"].(float64) >= 1 || status["activeSessions"].(float64) < 1 {
		t.Errorf("status %v", status)
	}
}

func TestStreamableHTTP(t *testing.T) {
	g := openGateway(t)
	g.configure(true, mcp.TransportStreamable)
	cs := connect(t, &sdk.StreamableClientTransport{Endpoint: g.Srv.URL + "/api/mcp/stream", HTTPClient: g.C, MaxRetries: -1})
	g.exercise(t, cs, mcp.TransportStreamable)
}

func TestSSE(t *testing.T) {
	g := openGateway(t)
	g.configure(true, mcp.TransportSSE)
	cs := connect(t, &sdk.SSEClientTransport{Endpoint: g.Srv.URL + "/api/mcp/sse", HTTPClient: g.C})
	g.exercise(t, cs, mcp.TransportSSE)
}

// The stdio transport (omni route mcp) relays a local client's pipes to
// the gateway's configured HTTP transport.
func TestStdioProxy(t *testing.T) {
	for _, transport := range []string{mcp.TransportStreamable, mcp.TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			g := openGateway(t)
			g.configure(true, transport)
			ctx, cancel := context.WithCancel(context.Background())
			toProxy, clientOut := io.Pipe()
			clientIn, fromProxy := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- mcp.Proxy(ctx, mcp.ProxyOptions{URL: g.Srv.URL, HTTPClient: g.C}, toProxy, fromProxy)
			}()
			t.Cleanup(func() {
				cancel()
				clientOut.Close()
				if err := <-done; err != nil {
					t.Errorf("proxy: %v", err)
				}
			})
			cs := connect(t, &sdk.IOTransport{Reader: clientIn, Writer: clientOut})
			g.exercise(t, cs, transport)
		})
	}
}

func TestProxyRefusesAnOffGateway(t *testing.T) {
	g := openGateway(t)
	err := mcp.Proxy(context.Background(), mcp.ProxyOptions{URL: g.Srv.URL, HTTPClient: g.C}, io.NopCloser(strings.NewReader("")), nopWriter{})
	if err == nil || !strings.Contains(err.Error(), "off") {
		t.Fatalf("proxy to a gateway with MCP off: %v", err)
	}
	anon := &http.Client{}
	err = mcp.Proxy(context.Background(), mcp.ProxyOptions{URL: g.Srv.URL, HTTPClient: anon, Key: "sk-not-a-key"}, io.NopCloser(strings.NewReader("")), nopWriter{})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("proxy with a wrong key: %v", err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriter) Close() error                { return nil }

var initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

// The transports answer per the stored settings: off → 503, the other
// transport configured → 400, both JSON errors.
func TestTransportGate(t *testing.T) {
	g := openGateway(t)
	sse := []string{"Accept", "text/event-stream"}
	stream := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream"}

	// Off by default.
	g.WantError(http.StatusServiceUnavailable, "GET", "/api/mcp/sse", nil, sse...)
	g.WantError(http.StatusServiceUnavailable, "POST", "/api/mcp/stream", initialize, stream...)
	g.WantError(http.StatusServiceUnavailable, "DELETE", "/api/mcp/stream", nil)
	if st := g.Want(http.StatusOK, "GET", "/api/mcp/status", nil).Object(t); st["online"] != false || st["transport"] != mcp.TransportStreamable {
		t.Errorf("status while off %v", st)
	}

	g.configure(true, mcp.TransportStreamable)
	msg := g.WantError(http.StatusBadRequest, "GET", "/api/mcp/sse", nil, sse...)
	if !strings.Contains(msg, "/api/mcp/stream") {
		t.Errorf("mismatch message %q does not name the configured endpoint", msg)
	}
	g.WantError(http.StatusBadRequest, "POST", "/api/mcp/sse?sessionid=x", initialize, "Content-Type", "application/json")
	if r := g.Do("POST", "/api/mcp/stream", initialize, stream...); r.Status != http.StatusOK || r.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize over streamable HTTP: %d %s", r.Status, r.Body)
	}

	g.configure(true, mcp.TransportSSE)
	g.WantError(http.StatusBadRequest, "POST", "/api/mcp/stream", initialize, stream...)
	g.configure(false, mcp.TransportSSE)
	g.WantError(http.StatusServiceUnavailable, "POST", "/api/mcp/sse?sessionid=x", initialize, "Content-Type", "application/json")
}

// Attackers: an anonymous client (internet or LAN), the holder of a
// gateway key (without the mcp scope) and a web page of another site in
// the operator's browser reach neither the transports nor the reads.
func TestAuth(t *testing.T) {
	g := openGateway(t)
	g.configure(true, mcp.TransportStreamable)
	_, raw := g.CreateKey(map[string]any{"name": "chat only"})
	jar, _ := cookiejar.New(nil)
	anon := &admintest.Env{T: t, Srv: g.Srv, C: &http.Client{Jar: jar}}
	stream := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream"}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/mcp/stream", initialize}, {"GET", "/api/mcp/stream", ""}, {"DELETE", "/api/mcp/stream", ""},
		{"GET", "/api/mcp/sse", ""}, {"POST", "/api/mcp/sse?sessionid=x", initialize},
		{"GET", "/api/mcp/status", ""}, {"GET", "/api/mcp/tools", ""}, {"GET", "/api/mcp/audit", ""}, {"GET", "/api/mcp/audit/stats", ""},
	} {
		var body any
		if r.body != "" {
			body = r.body
		}
		anon.WantError(http.StatusUnauthorized, r.method, r.path, body, stream...)
		// A gateway key without the mcp scope (or manage, for the reads)
		// is no MCP credential.
		anon.WantError(http.StatusForbidden, r.method, r.path, body, append(stream, admintest.Bearer(raw)...)...)
		// A page of another site, even with the operator's cookie.
		g.WantError(http.StatusForbidden, r.method, r.path, body, append(stream, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")...)
	}
	// A client of the SDK without the login cannot initialize.
	c := sdk.NewClient(&sdk.Implementation{Name: "anon", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: g.Srv.URL + "/api/mcp/stream", MaxRetries: -1}, nil); err == nil {
		cs.Close()
		t.Fatal("an anonymous SDK client initialized a session")
	}
}

func TestToolsList(t *testing.T) {
	g := openGateway(t)
	r := g.Want(http.StatusOK, "GET", "/api/mcp/tools", nil).Object(t)
	tools := r["tools"].([]any)
	if len(tools) != 6 {
		t.Fatalf("tools %v", r)
	}
	for _, tl := range tools {
		m := tl.(map[string]any)
		for _, f := range []string{"name", "description", "inputSchema", "scopes", "phase", "auditLevel", "sourceEndpoints"} {
			if v, ok := m[f]; !ok || v == nil || v == "" {
				t.Errorf("tool %v lacks %s", m["name"], f)
			}
		}
	}
}

func TestAuditQueryBounds(t *testing.T) {
	g := openGateway(t)
	for _, q := range []string{"limit=501", "limit=0", "limit=x", "offset=-1", "success=maybe", "tool=" + strings.Repeat("a", 200)} {
		g.WantError(http.StatusBadRequest, "GET", "/api/mcp/audit?"+q, nil)
	}
	if r := g.Want(http.StatusOK, "GET", "/api/mcp/audit?limit=500&offset=3&tool=x&success=true&apiKeyId=k", nil).Object(t); r["total"].(float64) != 0 {
		t.Errorf("empty audit %v", r)
	}
}

func TestMaskArguments(t *testing.T) {
	got := mcp.MaskArguments(json.RawMessage(`{"apiKey":"plain-value","keyId":"key_123","nested":{"password":"hunter2","n":3},
		"messages":[{"role":"user","content":"use sk-live-ABCDEFGHIJKLMNOP and Bearer abcdefghijklmnop please"}],
		"long":"` + strings.Repeat("x", 5000) + `"}`))
	for _, secret := range []string{"plain-value", "hunter2", "sk-live-ABCDEFGHIJKLMNOP", "abcdefghijklmnop"} {
		if strings.Contains(got, secret) {
			t.Errorf("masked arguments %s keep %q", got, secret)
		}
	}
	if !strings.Contains(got, "key_123") || !strings.Contains(got, "please") || len(got) > 4096 {
		t.Errorf("masked arguments %s (%d bytes)", got, len(got))
	}
	big := `{"a":[` + strings.Repeat(`"yyyyyyyyyy",`, 1000) + `"z"]}`
	if got := mcp.MaskArguments(json.RawMessage(big)); len(got) > 4096 || !strings.HasSuffix(got, "(truncated)") {
		t.Errorf("capped arguments are %d bytes: %.80s…", len(got), got)
	}
}

// A management key with the mcp scope is an MCP credential, and a key
// with another scope only is not. Gateways whose keys cannot hold the
// mcp scope yet skip it.
func TestKeyWithTheMCPScope(t *testing.T) {
	g := openGateway(t)
	g.configure(true, mcp.TransportStreamable)
	r := g.Do("POST", "/api/keys", map[string]any{"name": "mcp client", "scopes": []string{"mcp"}})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("a key with the mcp scope: %d %s", r.Status, r.Body)
	}
	raw := r.Object(t)["key"].(string)
	_, issuer := g.CreateKey(map[string]any{"name": "issuer", "scopes": []string{"issue"}})
	keyClient := func(k string) *http.Client {
		return &http.Client{Transport: bearerRT(k)}
	}
	cs := connect(t, &sdk.StreamableClientTransport{Endpoint: g.Srv.URL + "/api/mcp/stream", HTTPClient: keyClient(raw), MaxRetries: -1})
	if ans, text, failed := call(t, cs, "omniroute_chat", map[string]any{"model": "p/m", "messages": []map[string]string{{"role": "user", "content": "hello"}}}); failed || ans["content"] != "hi from up" {
		t.Fatalf("chat as the mcp key: %s", text)
	}
	if _, _, failed := call(t, cs, "omniroute_list_keys", nil); !failed {
		t.Error("a key without manage listed the keys")
	}
	c := sdk.NewClient(&sdk.Implementation{Name: "issuer", Version: "1"}, nil)
	if cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: g.Srv.URL + "/api/mcp/stream", HTTPClient: keyClient(issuer), MaxRetries: -1}, nil); err == nil {
		cs.Close()
		t.Fatal("a key without the mcp scope opened a session")
	}
}

type bearerRT string

func (k bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(k))
	return http.DefaultTransport.RoundTrip(r)
}
