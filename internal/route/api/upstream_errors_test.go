package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/routetest"
)

// clientErrorMessage is the message of an OpenAI-dialect error: the
// body's error object, or the error event of a stream.
func clientErrorMessage(t *testing.T, r routetest.Resp) string {
	t.Helper()
	body := r.Body
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/event-stream") {
		body = nil
		sc := bufio.NewScanner(bytes.NewReader(r.Body))
		for sc.Scan() {
			if data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: ")); ok && bytes.Contains(data, []byte(`"error"`)) {
				body = data
			}
		}
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("no error in the answer %d %s", r.Status, r.Body)
	}
	return e.Error.Message
}

// Every provider type's adapter names an upstream failure the same way:
// the provider's id, what happened (with the upstream's status when it
// answered) and the upstream's own message — and never the upstream's
// URL, host or port, not even when its answer names them.
func TestUpstreamFailuresFollowOnePattern(t *testing.T) {
	type failure struct {
		status int    // 0: a stream that fails after its first event
		body   string // the upstream's answer
		want   string // the message after "up: "; a trailing "…" matches any non-empty rest
	}
	types := []struct {
		typ, streamType string
		notFound        failure // a 4xx with the format's JSON error body
		midStream       failure
	}{
		{"openai", "text/event-stream",
			failure{404, `{"error":{"message":"The model m does not exist","type":"invalid_request_error","code":"model_not_found"}}`,
				"upstream answered 404: The model m does not exist"},
			failure{0, "openai/testdata/error_midstream.sse",
				"upstream stream failed: The server had an error while processing your request. Sorry about that!"}},
		{"anthropic", "text/event-stream",
			failure{404, `{"type":"error","error":{"type":"not_found_error","message":"model: m"}}`, "upstream answered 404: model: m"},
			failure{0, "anthropic/testdata/streams/overloaded.sse", "upstream stream failed: Overloaded"}},
		{"gemini", "text/event-stream",
			failure{404, `{"error":{"code":404,"message":"models/m is not found for API version v1beta","status":"NOT_FOUND"}}`,
				"upstream answered 404: models/m is not found for API version v1beta"},
			failure{0, "gemini/testdata/streams/error_midstream.sse", "upstream stream failed: The model is overloaded. Please try again later."}},
		{"ollama", "application/x-ndjson",
			failure{404, `{"error":"model \"m\" not found, try pulling it first"}`, `upstream answered 404: model "m" not found, try pulling it first`},
			failure{0, "ollama/testdata/streams/error_midstream.ndjson", "upstream stream failed: an error was encountered while running the model: unexpected EOF"}},
		{"openai-responses", "text/event-stream",
			failure{404, `{"error":{"message":"The model m does not exist","type":"invalid_request_error","code":"model_not_found"}}`,
				"upstream answered 404: The model m does not exist"},
			failure{0, "responses/testdata/error_midstream.sse",
				"upstream stream failed: The server had an error while processing your request. Sorry about that!"}},
	}

	// An address nothing listens on.
	closed := testenv.RefusedAddr(t)

	for _, ty := range types {
		var mu sync.Mutex
		var current failure
		var upHost string
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			current, upHost := current, upHost
			mu.Unlock()
			if current.status == 0 {
				w.Header().Set("Content-Type", ty.streamType)
				w.Write(fixture(t, current.body))
				return
			}
			ct := "application/json"
			if !strings.HasPrefix(current.body, "{") {
				ct = "text/html"
			}
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(current.status)
			// A proxy's page may name the upstream's own address.
			w.Write([]byte(strings.ReplaceAll(current.body, "HOST", upHost)))
		}))
		u, _ := url.Parse(up.URL)
		mu.Lock()
		upHost = u.Host
		mu.Unlock()
		cases := []struct {
			name    string
			base    string
			stream  bool
			failure failure
		}{
			{"transport failure", "http://" + closed + "/v1", false, failure{want: "upstream unreachable: connection refused"}},
			{"4xx with a JSON error", up.URL, false, ty.notFound},
			{"5xx without JSON", up.URL, false, failure{502, "<html><body>502 Bad Gateway: HOST did not answer</body></html>", "upstream answered 502: Bad Gateway"}},
			{"stream error event", up.URL, true, ty.midStream},
		}
		for _, c := range cases {
			mu.Lock()
			current = c.failure
			mu.Unlock()
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: ty.typ, BaseURL: c.base, APIKeys: []config.Secret{"k"}}}})
			r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions",
				map[string]any{"model": "up/m", "stream": c.stream, "messages": []map[string]any{{"role": "user", "content": "hi"}}},
				"Authorization", "Bearer "+gatewayKey)
			msg := clientErrorMessage(t, r)
			if want := "up: " + c.failure.want; msg != want {
				t.Errorf("%s upstream, %s: message %q, want %q", ty.typ, c.name, msg, want)
			}
			h, _ := url.Parse(c.base)
			for _, leak := range []string{h.Host, h.Hostname(), ":" + h.Port(), "http://", "127.0.0.1", "localhost"} {
				if strings.Contains(string(r.Body), leak) {
					t.Errorf("%s upstream, %s: the answer reveals %q: %s", ty.typ, c.name, leak, r.Body)
				}
			}
		}
		up.Close()
	}
}
