package api_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// Socket requests pass a managed key's policy, RPM and budget as chat
// requests do: a forbidden model is a 403 error event, the request past
// the RPM a 429, and streamed usage is charged, so the budget runs out.
func TestWSKeyPolicyRPMAndBudget(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, _ string) {
		s.start()
		s.content("hi")
		s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`)
		s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"m","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}`)
		s.line("[DONE]")
	})
	const password = "correct horse battery"
	cfg := config.Default()
	cfg.Route.InitialPassword = password
	cfg.Route.RequireAPIKey = true
	cfg.Route.APIKeys = []config.Secret{"config-key-1"}
	for _, id := range []string{"oa", "other"} {
		cfg.Route.Providers = append(cfg.Route.Providers, config.RouteProvider{ID: id, Type: "openai", BaseURL: up.URL,
			APIKeys: []config.Secret{"sk-up"}, Models: []string{"m"}})
	}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: []byte("0123456789abcdef0123456789abcdef"),
		Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	admin := &http.Client{Jar: jar}
	want := func(status int, method, path string, body any) routetest.Resp {
		t.Helper()
		r := routetest.Send(t, admin, method, srv.URL+path, body)
		if r.Status != status {
			t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
		return r
	}
	want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
	k1 := want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "policy", "allowed_models": []string{"oa/*"}, "rpm": 2}).Object(t)
	k2 := want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "budget"}).Object(t)
	// $1 per million input, $2 per million output: each answer costs $0.002.
	want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "oa/m", "input": 1, "output": 2})
	want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": k2["id"], "dailyLimitUsd": 0.005})

	dial := func(raw string) *websocket.Conn {
		return wsDial(t, srv.URL, &websocket.DialOptions{Subprotocols: []string{"omniroute.v1", "omniroute.key." + raw}})
	}
	ask := func(c *websocket.Conn, id, model string) wsEvent {
		t.Helper()
		wsSend(t, c, wsRequest(id, model, "hello", "max_tokens", "500"))
		_, last := wsCollect(t, c, id)
		return last
	}
	c1 := dial(k1["key"].(string))
	if ev := ask(c1, "x", "other/m"); ev.Type != "error" || ev.Status != 403 || ev.Error.Type != "permission_error" {
		t.Fatalf("forbidden model: %+v %+v", ev, ev.Error)
	}
	for _, id := range []string{"a", "b"} {
		if ev := ask(c1, id, "oa/m"); ev.Type != "done" {
			t.Fatalf("within the RPM: %+v", ev)
		}
	}
	if ev := ask(c1, "c", "oa/m"); ev.Type != "error" || ev.Status != 429 || ev.Error.Type != "rate_limit_error" {
		t.Fatalf("past the RPM: %+v %+v", ev, ev.Error)
	}

	c2 := dial(k2["key"].(string))
	for _, id := range []string{"a", "b", "c"} {
		if ev := ask(c2, id, "oa/m"); ev.Type != "done" {
			t.Fatalf("within the budget: %+v", ev)
		}
	}
	ev := ask(c2, "d", "oa/m")
	if ev.Type != "error" || ev.Status != 429 || !strings.Contains(ev.Error.Message, "Budget has been exceeded") {
		t.Fatalf("past the budget: %+v %+v", ev, ev.Error)
	}
}
