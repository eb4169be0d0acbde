package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// openGateway starts the gateway over one OpenAI-format provider "oa"
// answering at up, with the gateway key gatewayKey configured but, unless
// mutate says otherwise, not required. It listens on addr
// ("127.0.0.1:0" for the loopback).
func openGateway(t *testing.T, addr, up string, mutate func(*config.Config)) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{gatewayKey},
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up, APIKeys: []config.Secret{"sk-provider"}, Models: []string{"gpt-4o"}}}}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(httpx.Wrap(a.API, logging.Discard(), nil))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// okUpstream answers every chat request of any format with a short
// OpenAI completion.
func okUpstream(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`))
	})
}

// lanIP is a non-loopback IPv4 address of this host: a client connecting
// to it from this host is not on the loopback.
func lanIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	testenv.Unavailable(t, "this host has no non-loopback IPv4 address to play a LAN client from")
	return ""
}

// dialectCall is one request of each client dialect with the checks of
// its error shape.
type dialectCall struct {
	name, method, path, body string
	shape                    func(t *testing.T, body []byte)
}

func dialectCalls() []dialectCall {
	chat := `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	openAIShape := func(t *testing.T, b []byte) {
		var v struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if json.Unmarshal(b, &v) != nil || v.Error.Type != "authentication_error" || v.Error.Message == "" {
			t.Fatalf("not an OpenAI authentication error: %s", b)
		}
	}
	return []dialectCall{
		{"openai", "POST", "/v1/chat/completions", chat, openAIShape},
		{"openai models", "GET", "/v1/models", "", openAIShape},
		{"responses", "POST", "/v1/responses", `{"model":"oa/gpt-4o","input":"hi"}`, openAIShape},
		{"anthropic", "POST", "/v1/messages", `{"model":"oa/gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, func(t *testing.T, b []byte) {
			var v struct {
				Type  string                         `json:"type"`
				Error struct{ Type, Message string } `json:"error"`
			}
			if json.Unmarshal(b, &v) != nil || v.Type != "error" || v.Error.Type != "authentication_error" || v.Error.Message == "" {
				t.Fatalf("not an Anthropic authentication error: %s", b)
			}
		}},
		{"gemini", "POST", "/v1beta/models/oa/gpt-4o:generateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, func(t *testing.T, b []byte) {
			var v struct {
				Error struct {
					Code            int
					Message, Status string
				} `json:"error"`
			}
			if json.Unmarshal(b, &v) != nil || v.Error.Code != 401 || v.Error.Status != "UNAUTHENTICATED" || v.Error.Message == "" {
				t.Fatalf("not a Gemini UNAUTHENTICATED error: %s", b)
			}
		}},
		{"ollama", "POST", "/api/chat", `{"model":"oa/gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}]}`, func(t *testing.T, b []byte) {
			var v struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(b, &v) != nil || v.Error == "" {
				t.Fatalf("not an Ollama error: %s", b)
			}
		}},
	}
}

// A key that is not valid is refused in every dialect, even when keys are
// not required and the client is on the gateway host: a typo, a revoked
// key or a guess never becomes anonymous access (which would bypass the
// key's policy and budget).
func TestInvalidKeyIsRefusedInEveryDialect(t *testing.T) {
	up := okUpstream(t)
	gw := openGateway(t, "127.0.0.1:0", up.URL, nil)
	for _, c := range dialectCalls() {
		for _, hdr := range [][]string{
			{"Authorization", "Bearer sk-omni-not-a-key"},
			{"x-api-key", "sk-omni-not-a-key"},
			{"x-goog-api-key", "sk-omni-not-a-key"},
		} {
			t.Run(c.name+" "+hdr[0], func(t *testing.T) {
				var body any
				if c.body != "" {
					body = c.body
				}
				r := routetest.Send(t, http.DefaultClient, c.method, gw.URL+c.path, body, hdr...)
				if r.Status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401: %s", r.Status, r.Body)
				}
				c.shape(t, r.Body)
			})
		}
	}
	// The valid key works, and so does no key at all from the loopback.
	for _, hdr := range [][]string{{"Authorization", "Bearer " + gatewayKey}, nil} {
		if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`, hdr...); r.Status != http.StatusOK {
			t.Fatalf("%v: status %d: %s", hdr, r.Status, r.Body)
		}
	}
	// The official SDK surfaces it as an authentication error.
	c := openai.NewClient(ooption.WithBaseURL(gw.URL+"/v1/"), ooption.WithAPIKey("sk-omni-typo"), ooption.WithMaxRetries(0))
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "oa/gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SDK error %v, want a 401", err)
	}
	if n := up.calls(); n != 2 {
		t.Fatalf("upstream saw %d calls, want only the 2 authorised ones", n)
	}
}

// Without REQUIRE_API_KEY, requests without a key are served only to the
// gateway host itself: a client on the LAN (a real non-loopback socket),
// a request relayed by a local reverse proxy, and a web page in the
// operator's browser (cross-site, or DNS rebinding) get 401.
func TestAnonymousAccessOnlyFromGatewayHost(t *testing.T) {
	up := okUpstream(t)
	chat := `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	local := openGateway(t, "127.0.0.1:0", up.URL, nil)
	lan := openGateway(t, lanIP(t)+":0", up.URL, nil)

	if r := routetest.Send(t, http.DefaultClient, "POST", local.URL+"/v1/chat/completions", chat); r.Status != http.StatusOK {
		t.Fatalf("anonymous from the loopback: %d %s", r.Status, r.Body)
	}
	for _, c := range dialectCalls() {
		t.Run("lan "+c.name, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := routetest.Send(t, http.DefaultClient, c.method, lan.URL+c.path, body)
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("anonymous from %s: status %d, want 401: %s", lan.URL, r.Status, r.Body)
			}
			c.shape(t, r.Body)
		})
	}
	// The LAN client with the key is served.
	if r := routetest.Send(t, http.DefaultClient, "POST", lan.URL+"/v1/chat/completions", chat, "Authorization", "Bearer "+gatewayKey); r.Status != http.StatusOK {
		t.Fatalf("keyed from the LAN: %d %s", r.Status, r.Body)
	}
	// A proxy on the gateway host relays from the loopback: any header a
	// proxy, load balancer or CDN adds, or a Host that is not a loopback
	// name (a proxy forwarding the client's Host), means another client.
	// Allowed hosts widen where management answers, never who is local.
	wildcard := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.Route.AllowedHosts = []string{"*"} })
	named := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.Route.AllowedHosts = []string{"gw.example.com"} })
	for _, c := range []struct {
		name string
		gw   *httptest.Server
		hdr  []string
	}{
		{"relayed by a local proxy", local, []string{"X-Forwarded-For", "203.0.113.9"}},
		{"Forwarded", local, []string{"Forwarded", "for=203.0.113.9"}},
		{"X-Forwarded-Host", local, []string{"X-Forwarded-Host", "gw.example.com"}},
		{"X-Forwarded-Proto", local, []string{"X-Forwarded-Proto", "https"}},
		{"X-Real-IP", local, []string{"X-Real-IP", "203.0.113.9"}},
		{"Via", local, []string{"Via", "1.1 gw.example.com"}},
		{"CF-Connecting-IP", local, []string{"CF-Connecting-IP", "203.0.113.9"}},
		{"True-Client-IP", local, []string{"True-Client-IP", "203.0.113.9"}},
		{"X-Client-IP", local, []string{"X-Client-IP", "203.0.113.9"}},
		{"Fastly-Client-IP", local, []string{"Fastly-Client-IP", "203.0.113.9"}},
		{"cross-site page", local, []string{"Origin", "https://evil.example"}},
		{"cross-site fetch", local, []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site page", local, []string{"Sec-Fetch-Site", "same-site"}},
		{"DNS rebinding", local, []string{"Host", "evil.example"}},
		{"public Host, allowed hosts *", wildcard, []string{"Host", "gw.example.com"}},
		{"public Host, allowed by name", named, []string{"Host", "gw.example.com:443"}},
		{"LAN address as Host", wildcard, []string{"Host", "192.0.2.10:20128"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range dialectCalls() {
				var body any
				if d.body != "" {
					body = d.body
				}
				r := routetest.Send(t, http.DefaultClient, d.method, c.gw.URL+d.path, body, c.hdr...)
				if r.Status != http.StatusUnauthorized {
					t.Fatalf("%s: status %d, want 401: %s", d.name, r.Status, r.Body)
				}
				d.shape(t, r.Body)
			}
			// With the key the same request is served: the key, not the
			// address, is what counts.
			if r := routetest.Send(t, http.DefaultClient, "POST", c.gw.URL+"/v1/chat/completions", chat, append(c.hdr, "Authorization", "Bearer "+gatewayKey)...); r.Status != http.StatusOK {
				t.Fatalf("with the key: %d %s", r.Status, r.Body)
			}
		})
	}
	// Loopback names in any spelling stay local.
	for _, host := range []string{"localhost", "LOCALHOST.", "127.0.0.1", "[::1]:20128"} {
		if r := routetest.Send(t, http.DefaultClient, "POST", wildcard.URL+"/v1/chat/completions", chat, "Host", host); r.Status != http.StatusOK {
			t.Fatalf("anonymous from the loopback as %s: %d %s", host, r.Status, r.Body)
		}
	}
	// REQUIRE_API_KEY=true requires it from the loopback too.
	strict := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.Route.RequireAPIKey = true })
	if r := routetest.Send(t, http.DefaultClient, "POST", strict.URL+"/v1/chat/completions", chat); r.Status != http.StatusUnauthorized {
		t.Fatalf("require_api_key from the loopback: %d %s", r.Status, r.Body)
	}
	// A proxy on the gateway host that says nothing cannot be told from
	// a local client: the start warns about it, unless keys are required.
	for _, require := range []bool{false, true} {
		logs := &lockedBuffer{}
		cfg := config.Default()
		cfg.Route = config.RouteConfig{RequireAPIKey: require, Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}}
		if _, err := routeapp.New(&cfg, nil, clock.Real{}, slog.New(slog.NewTextHandler(logs, nil))); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "REQUIRE_API_KEY=true")
		if warned == require {
			t.Fatalf("require_api_key %v: warned %v; log:\n%s", require, warned, logs.String())
		}
	}
}

// A gateway key in the query string (?key=, as Google's API takes it) is
// accepted on the Gemini routes only: elsewhere it would end up in access
// logs and browser histories without any client needing it.
func TestQueryKeyOnlyOnGeminiRoutes(t *testing.T) {
	up := okUpstream(t)
	gw := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.Route.RequireAPIKey = true })
	chat := `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", chat},
		{"/v1/messages", `{"model":"oa/gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"oa/gpt-4o","input":"hi"}`},
		{"/api/chat", `{"model":"oa/gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+c.path+"?key="+gatewayKey, c.body); r.Status != http.StatusUnauthorized {
			t.Fatalf("%s?key=: status %d, want 401: %s", c.path, r.Status, r.Body)
		}
	}
	r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1beta/models/oa/gpt-4o:generateContent?key="+gatewayKey, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`)
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "candidates") {
		t.Fatalf("Gemini ?key=: %d %s", r.Status, r.Body)
	}
}

// The operator opts in to anonymous access from anywhere with
// REQUIRE_API_KEY=false (or --allow-anonymous); a bad key is still
// refused. Behind a trusted proxy the forwarded client address counts.
func TestAnonymousAccessOptIn(t *testing.T) {
	up := okUpstream(t)
	chat := `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	lan := openGateway(t, lanIP(t)+":0", up.URL, func(c *config.Config) { c.Route.AllowAnonymous = true })
	if r := routetest.Send(t, http.DefaultClient, "POST", lan.URL+"/v1/chat/completions", chat); r.Status != http.StatusOK {
		t.Fatalf("anonymous from the LAN with allow_anonymous: %d %s", r.Status, r.Body)
	}
	if r := routetest.Send(t, http.DefaultClient, "POST", lan.URL+"/v1/chat/completions", chat, "Authorization", "Bearer sk-wrong"); r.Status != http.StatusUnauthorized {
		t.Fatalf("a wrong key with allow_anonymous: %d %s", r.Status, r.Body)
	}
	proxied := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.TrustProxy = "true" })
	if r := routetest.Send(t, http.DefaultClient, "POST", proxied.URL+"/v1/chat/completions", chat, "X-Forwarded-For", "203.0.113.9"); r.Status != http.StatusUnauthorized {
		t.Fatalf("a remote client through a trusted proxy: %d %s", r.Status, r.Body)
	}
	if r := routetest.Send(t, http.DefaultClient, "POST", proxied.URL+"/v1/chat/completions", chat); r.Status != http.StatusOK {
		t.Fatalf("the gateway host itself, trusted proxy configured: %d %s", r.Status, r.Body)
	}
}

// Behind a trusted proxy, only a client on the gateway host is local:
// a forged X-Forwarded-For entry in front of the proxy's own does not
// make a remote client local.
func TestForwardedForCannotForgeTheGatewayHost(t *testing.T) {
	up := okUpstream(t)
	chat := `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	gw := openGateway(t, "127.0.0.1:0", up.URL, func(c *config.Config) { c.TrustProxy = "true" })
	for _, xff := range []string{"127.0.0.1, 203.0.113.9", "::1, 198.51.100.4", "203.0.113.9"} {
		if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", chat, "X-Forwarded-For", xff); r.Status != http.StatusUnauthorized {
			t.Fatalf("X-Forwarded-For %q: %d %s", xff, r.Status, r.Body)
		}
	}
	// A local client through a local proxy is local.
	if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", chat, "X-Forwarded-For", "127.0.0.1"); r.Status != http.StatusOK {
		t.Fatalf("a local client through a local proxy: %d %s", r.Status, r.Body)
	}
}

// lockedBuffer collects log lines written from any goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
