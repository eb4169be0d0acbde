package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// respCall sends one Responses request; key "" sends none (the test
// gateways listen on the loopback, whose requests without a key are
// served).
func respCall(t *testing.T, gw, method, path, key string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, gw+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// responsesGateway serves the gateway with keys over up, its stored
// responses in rs (nil: the default store).
func responsesGateway(t *testing.T, up string, rs pipeline.ResponseStore, keys ...config.Secret) string {
	t.Helper()
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: keys,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up, APIKeys: []config.Secret{"sk-provider"}, Models: []string{"gpt-4o"}}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if rs != nil {
		a.API.SetResponseStore(rs)
	}
	srv := httptest.NewServer(httpx.Wrap(a.API, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A stored response belongs to the key that created it: another key, or
// a request without a key, can neither read, continue nor delete it, and
// is told it does not exist; and the other way round for a response
// stored without a key.
func TestStoredResponsesAreScopedToTheKey(t *testing.T) {
	up := okUpstream(t)
	const keyA, keyB = "sk-gateway-a", "sk-gateway-b"
	gw := responsesGateway(t, up.URL, nil, keyA, keyB)
	create := func(key string) string {
		t.Helper()
		st, body := respCall(t, gw, "POST", "/v1/responses", key, map[string]any{"model": "oa/gpt-4o", "input": "hello"})
		if st != 200 || body["id"] == nil {
			t.Fatalf("create: %d %v", st, body)
		}
		return body["id"].(string)
	}
	cont := func(key, prev string) int {
		t.Helper()
		st, _ := respCall(t, gw, "POST", "/v1/responses", key, map[string]any{"model": "oa/gpt-4o", "input": "and then?", "previous_response_id": prev})
		return st
	}
	mine := create(keyA)
	anon := create("")
	for _, c := range []struct{ owner, other, id string }{{keyA, keyB, mine}, {keyA, "", mine}, {"", keyA, anon}} {
		if st, body := respCall(t, gw, "GET", "/v1/responses/"+c.id, c.other, nil); st != 404 {
			t.Fatalf("GET of %q's response with %q: %d %v", c.owner, c.other, st, body)
		}
		if st := cont(c.other, c.id); st != 400 {
			t.Fatalf("%q continued %q's response: %d", c.other, c.owner, st)
		}
		if st, _ := respCall(t, gw, "DELETE", "/v1/responses/"+c.id, c.other, nil); st != 404 {
			t.Fatalf("%q deleted %q's response: %d", c.other, c.owner, st)
		}
		if st, body := respCall(t, gw, "GET", "/v1/responses/"+c.id, c.owner, nil); st != 200 || body["id"] != c.id {
			t.Fatalf("GET by its owner %q: %d %v", c.owner, st, body)
		}
		if st := cont(c.owner, c.id); st != 200 {
			t.Fatalf("continued by its owner %q: %d", c.owner, st)
		}
	}
	if st, _ := respCall(t, gw, "DELETE", "/v1/responses/"+mine, keyA, nil); st != 200 {
		t.Fatalf("DELETE by its owner: %d", st)
	}
	// An id the gateway never gives out is not looked up.
	if st, _ := respCall(t, gw, "GET", "/v1/responses/resp_..%2f..", keyA, nil); st != 404 {
		t.Fatalf("malformed id: %d", st)
	}
}

// Configured keys own their responses by the key itself, not by their
// position: reordering or removing keys of the configuration (replicas
// configured at different times) hands no key another's conversations.
func TestStoredResponsesFollowTheConfiguredKeyNotItsPosition(t *testing.T) {
	up := okUpstream(t)
	shared := pipeline.NewMemoryResponseStore(pipeline.ResponseLimits{}, clock.Real{})
	before := responsesGateway(t, up.URL, shared, "sk-first", "sk-second")
	after := responsesGateway(t, up.URL, shared, "sk-second")
	st, body := respCall(t, before, "POST", "/v1/responses", "sk-first", map[string]any{"model": "oa/gpt-4o", "input": "hello"})
	if st != 200 {
		t.Fatalf("create: %d %v", st, body)
	}
	first := body["id"].(string)
	if st, _ := respCall(t, after, "GET", "/v1/responses/"+first, "sk-second", nil); st != 404 {
		t.Fatalf("the key now first in the list reads the removed key's response: %d", st)
	}
	st, body = respCall(t, before, "POST", "/v1/responses", "sk-second", map[string]any{"model": "oa/gpt-4o", "input": "hello"})
	if st != 200 {
		t.Fatalf("create: %d %v", st, body)
	}
	if st, _ := respCall(t, after, "GET", "/v1/responses/"+body["id"].(string), "sk-second", nil); st != 200 {
		t.Fatalf("a key that moved in the list lost its response: %d", st)
	}
}
