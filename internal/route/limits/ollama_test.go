package limits_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A key limited to provider b cannot reach provider a through the Ollama
// dialect's other endpoints either: /api/generate and /api/embeddings are
// refused like /api/chat, /api/show answers 403, /api/ps leaves a's models
// out; generate counts against the key's rpm, the metadata endpoints do
// not.
func TestKeyPolicyOnOllamaEndpoints(t *testing.T) {
	e := newEnv(t)
	_, raw := e.createKey(map[string]any{"name": "ci", "allowed_providers": []string{"b"}, "rpm": 2})
	key := bearer(raw)
	gen := func(model string) map[string]any {
		return map[string]any{"model": model, "prompt": "hello", "stream": false}
	}
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/api/generate", gen("a/m")},
		{"/v1/api/generate", gen("a/m")},
		{"/api/embeddings", map[string]any{"model": "a/m", "prompt": "hello"}},
		{"/api/show", map[string]any{"model": "a/m"}},
		{"/api/generate", map[string]any{"model": "a/m"}}, // load only
	} {
		r := e.do("POST", c.path, c.body, key...)
		var body map[string]any
		if r.Status != http.StatusForbidden || json.Unmarshal(r.Body, &body) != nil || !strings.Contains(body["error"].(string), "not allowed") &&
			!strings.Contains(body["error"].(string), "no provider allowed") {
			t.Fatalf("%s %v: %d %s", c.path, c.body, r.Status, r.Body)
		}
	}
	if n := e.served["a"].Load(); n != 0 {
		t.Fatalf("provider a served %d requests", n)
	}
	// Metadata: show of an allowed model and ps are not counted.
	for range 3 {
		s := e.want(http.StatusOK, "POST", "/api/show", map[string]any{"model": "b/m"}, key...).Object(t)
		if caps, _ := s["capabilities"].([]any); len(caps) == 0 {
			t.Fatalf("show: %v", s)
		}
	}
	ps := e.want(http.StatusOK, "GET", "/api/ps", nil, key...).Object(t)
	var names []string
	for _, m := range ps["models"].([]any) {
		names = append(names, m.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "b/m,team" {
		t.Fatalf("ps for a key limited to b: %v", names)
	}
	// Without policy (a config key) every model is listed.
	all := e.want(http.StatusOK, "GET", "/api/ps", nil, bearer("config-key-1")...).Object(t)
	if n := len(all["models"].([]any)); n != 3 {
		t.Fatalf("ps for a config key: %v", all)
	}
	// rpm 2: the refusals and the metadata calls did not count.
	e.want(http.StatusOK, "POST", "/api/generate", gen("b/m"), key...)
	e.want(http.StatusOK, "POST", "/api/generate", gen("team"), key...)
	r := e.want(http.StatusTooManyRequests, "POST", "/api/generate", gen("b/m"), key...)
	if !strings.Contains(string(r.Body), `"error":"rpm limit of 2 reached for key ci"`) {
		t.Fatalf("429 body %s", r.Body)
	}
	// Without a key nothing is answered, not even the metadata.
	for _, p := range []string{"/api/ps", "/api/tags"} {
		e.want(http.StatusUnauthorized, "GET", p, nil, "Authorization", "Bearer wrong")
	}
}

// On the listener the management API shares, the management routes keep
// answering; a path neither serves is a JSON 404, not plain text.
func TestOllamaPathsBesideManagement(t *testing.T) {
	e := newEnv(t)
	e.want(http.StatusOK, "GET", "/api/keys", nil)
	e.want(http.StatusOK, "GET", "/api/combos", nil)
	e.want(http.StatusOK, "GET", "/api/tags", nil, bearer("config-key-1")...)
	for _, p := range []string{"/api/nope", "/api/keys/x/y/z", "/v1/api/nope"} {
		r := e.want(http.StatusNotFound, "GET", p, nil)
		var body struct{ Error string }
		if json.Unmarshal(r.Body, &body) != nil || body.Error == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %q %s", p, r.Header.Get("Content-Type"), r.Body)
		}
	}
	r := e.want(http.StatusNotImplemented, "POST", "/api/pull", map[string]any{"model": "llama3"}, bearer("config-key-1")...)
	if !strings.Contains(string(r.Body), `"error":"the gateway does not pull models`) {
		t.Fatalf("pull: %s", r.Body)
	}
}
