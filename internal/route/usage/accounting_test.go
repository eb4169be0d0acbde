package usage_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/api"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// The accounting matrix: every way a request can fail, against a fake
// upstream of every provider type, streaming and not, each spoken to in
// its own dialect. What the client saw must be what the usage record,
// /api/usage/history, /api/usage/{connectionId}, the Prometheus counter
// and the warning log say.

// acctProvider is a provider type, the dialect its clients speak here,
// and its wire details.
type acctProvider struct {
	typ, dialect, model string
	streamType          string // content type of its streams
	textJSON, textSSE   string // fixtures under ../formats
	firstText           int    // events of textSSE up to its first text
	errorBody           func(status int, msg string) string
	request             func(model string, stream bool) (path, body string)
}

var acctProviders = []acctProvider{
	{typ: "openai", dialect: "openai", model: "gpt-4o", streamType: "text/event-stream",
		textJSON: "openai/testdata/text.json", textSSE: "openai/testdata/text.sse", firstText: 2,
		errorBody: func(status int, msg string) string {
			return fmt.Sprintf(`{"error":{"message":%q,"type":"invalid_request_error","code":null}}`, msg)
		},
		request: func(model string, stream bool) (string, string) {
			return "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"stream":%t}`, model, stream)
		}},
	{typ: "anthropic", dialect: "anthropic", model: "claude-sonnet-4-5", streamType: "text/event-stream",
		textJSON: "anthropic/testdata/responses/text.json", textSSE: "anthropic/testdata/streams/text.sse", firstText: 4,
		errorBody: func(status int, msg string) string {
			typ := map[int]string{404: "not_found_error", 503: "overloaded_error"}[status]
			return fmt.Sprintf(`{"type":"error","error":{"type":%q,"message":%q}}`, typ, msg)
		},
		request: func(model string, stream bool) (string, string) {
			return "/v1/messages", fmt.Sprintf(`{"model":%q,"max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":%t}`, model, stream)
		}},
	{typ: "gemini", dialect: "gemini", model: "gemini-2.5-flash", streamType: "text/event-stream",
		textJSON: "gemini/testdata/responses/text.json", textSSE: "gemini/testdata/streams/text.sse", firstText: 2,
		errorBody: func(status int, msg string) string {
			name := map[int]string{404: "NOT_FOUND", 503: "UNAVAILABLE"}[status]
			return fmt.Sprintf(`{"error":{"code":%d,"message":%q,"status":%q}}`, status, msg, name)
		},
		request: func(model string, stream bool) (string, string) {
			path := "/v1beta/models/" + model + ":generateContent"
			if stream {
				path = "/v1beta/models/" + model + ":streamGenerateContent?alt=sse"
			}
			return path, `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
		}},
	{typ: "ollama", dialect: "ollama", model: "qwen3:8b", streamType: "application/x-ndjson",
		textJSON: "ollama/testdata/responses/text.json", textSSE: "ollama/testdata/streams/text.ndjson", firstText: 1,
		errorBody: func(status int, msg string) string { return fmt.Sprintf(`{"error":%q}`, msg) },
		request: func(model string, stream bool) (string, string) {
			return "/api/chat", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"stream":%t}`, model, stream)
		}},
	{typ: "openai-responses", dialect: "responses", model: "gpt-4.1", streamType: "text/event-stream",
		textJSON: "responses/testdata/text.json", textSSE: "responses/testdata/text.sse", firstText: 5,
		errorBody: func(status int, msg string) string {
			return fmt.Sprintf(`{"error":{"message":%q,"type":"invalid_request_error","param":null,"code":null}}`, msg)
		},
		request: func(model string, stream bool) (string, string) {
			return "/v1/responses", fmt.Sprintf(`{"model":%q,"input":"hi","store":false,"stream":%t}`, model, stream)
		}},
}

// How a request fails.
const (
	failRefused = "refused" // the upstream's port refuses connections
	fail4xx     = "4xx"     // the upstream answers 404
	fail5xx     = "5xx"     // the upstream answers 503
	failTimeout = "timeout" // the upstream never answers within the provider's timeout
	failCut     = "cut"     // the upstream's answer breaks off half-way
	failLeft    = "left"    // the client goes away while the upstream works
)

var failKinds = []string{failRefused, fail4xx, fail5xx, failTimeout, failCut, failLeft}

// acctCase is one cell of the matrix: its own provider id and upstream.
type acctCase struct {
	id     string // provider id, also the request id
	p      acctProvider
	kind   string
	stream bool
	base   string        // the upstream's URL
	seen   chan struct{} // failLeft: the upstream has the request (and sent its first events)
}

func (c *acctCase) name() string {
	mode := "plain"
	if c.stream {
		mode = "stream"
	}
	return c.p.typ + "/" + c.kind + "/" + mode
}

func (c *acctCase) model() string { return c.id + "/" + c.p.model }

// head is the first n events (SSE) or lines (NDJSON) of a stream.
func head(b []byte, ndjson bool, n int) []byte {
	sep := []byte("\n\n")
	if ndjson {
		sep = []byte("\n")
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	parts := bytes.SplitAfter(b, sep)
	return bytes.Join(parts[:min(n, len(parts)-1)], nil)
}

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile("../formats/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startUpstream serves the failure of c.
func startUpstream(t *testing.T, c *acctCase) {
	t.Helper()
	if c.kind == failRefused {
		c.base = "http://" + testenv.RefusedAddr(t)
		return
	}
	streamHead := head(readFixture(t, c.p.textSSE), c.p.streamType == "application/x-ndjson", c.p.firstText)
	plain := readFixture(t, c.p.textJSON)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var probe struct {
			Stream *bool `json:"stream"`
		}
		_ = json.Unmarshal(body, &probe)
		stream := strings.Contains(r.URL.Path, ":streamGenerateContent") || probe.Stream != nil && *probe.Stream
		switch c.kind {
		case fail4xx, fail5xx:
			status := map[string]int{fail4xx: http.StatusNotFound, fail5xx: http.StatusServiceUnavailable}[c.kind]
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, c.p.errorBody(status, "upstream says "+c.kind))
		case failTimeout:
			<-r.Context().Done() // the gateway gives up first
		case failCut, failLeft:
			if stream {
				w.Header().Set("Content-Type", c.p.streamType)
				w.Write(streamHead)
				w.(http.Flusher).Flush()
			} else if c.kind == failCut {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", fmt.Sprint(len(plain)))
				w.Write(plain[:len(plain)/2])
				w.(http.Flusher).Flush()
			}
			if c.kind == failCut {
				panic(http.ErrAbortHandler) // the connection breaks
			}
			close(c.seen)
			<-r.Context().Done() // until the gateway lets go
		}
	}))
	t.Cleanup(srv.Close)
	c.base = srv.URL
}

// syncBuffer is a log sink shared by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// warnings returns the warning lines logged for a request id.
func (s *syncBuffer) warnings(t *testing.T, requestID string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["request_id"] == requestID && m["level"] == "WARN" {
			out = append(out, m)
		}
	}
	return out
}

// want is what a case must show: the status the client receives, the
// status and error type its record carries.
func (c *acctCase) want() (client, status int, errType string) {
	switch c.kind {
	case failRefused:
		return 502, 502, "api_error"
	case fail4xx:
		return 404, 404, "not_found_error"
	case fail5xx:
		if c.p.dialect == "anthropic" {
			return 529, 529, "overloaded_error" // Anthropic clients retry 529
		}
		return 503, 503, "overloaded_error"
	case failTimeout:
		return 504, 504, "timeout_error"
	case failCut:
		if c.stream {
			return 200, 502, "stream_error" // failed after its first byte (pipeline.ErrStreamFailed)
		}
		return 502, 502, "api_error"
	}
	return 0, 499, "invalid_request_error" // failLeft: the client is gone
}

func TestAccountingMatrix(t *testing.T) {
	var cases []*acctCase
	var providers []config.RouteProvider
	for _, p := range acctProviders {
		for _, kind := range failKinds {
			for _, stream := range []bool{false, true} {
				c := &acctCase{id: fmt.Sprintf("p%d", len(cases)), p: p, kind: kind, stream: stream, seen: make(chan struct{})}
				startUpstream(t, c)
				rp := config.RouteProvider{ID: c.id, Type: p.typ, BaseURL: c.base, APIKeys: []config.Secret{"k"}}
				if kind == failTimeout {
					rp.Timeout = 50 * time.Millisecond
				}
				cases, providers = append(cases, c), append(providers, rp)
			}
		}
	}

	st := sqliteStore(t)
	reg := prometheus.NewRegistry()
	rec := usage.New(usage.Options{Store: st, Registerer: reg, Linger: 10 * time.Millisecond, Log: logging.Discard()})
	runRecorder(t, rec)
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{config.Secret(gatewayKey)}, RequireAPIKey: true, Providers: providers,
		UpstreamIdleTimeout: 10 * time.Second} // bounds a test that would hang
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	gw := api.New(a.Router, a, api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey}, Pipeline: pipeline.Stages{Gates: []pipeline.Gate{rec}}},
		clock.Real{}, slog.New(slog.NewJSONHandler(logs, nil)))
	srv := httptest.NewServer(httpx.Wrap(gw, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	mux := http.NewServeMux()
	rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	mgmt := httptest.NewServer(mux)
	t.Cleanup(mgmt.Close)
	admin := client{t, mgmt}

	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			admin.t = t
			got := c.send(t, srv.URL)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := gw.Settle(sctx); err != nil { // the call has reached the gates
				t.Fatal(err)
			}
			if err := rec.Flush(sctx); err != nil {
				t.Fatal(err)
			}
			client, status, errType := c.want()
			if got != client {
				t.Fatalf("the client got %d, want %d", got, client)
			}

			// The record.
			recs, err := st.UsageLogs(ctx, store.UsageFilter{Model: c.model()}, 10, 0)
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d records (%v), want 1", len(recs), err)
			}
			r := recs[0]
			conn := c.id + "#1"
			if r.Status != status || r.Provider != c.id || r.Connection != conn || r.TargetModel != c.p.model || r.ErrorType != errType ||
				r.ErrorMessage == "" || r.Attempts != 1 || r.Stream != c.stream {
				t.Fatalf("record: status %d provider %q connection %q model %q error %q %q attempts %d stream %v; want status %d, %s, %s, %s, %s",
					r.Status, r.Provider, r.Connection, r.TargetModel, r.ErrorType, r.ErrorMessage, r.Attempts, r.Stream, status, c.id, conn, c.p.model, errType)
			}
			if c.kind == failCut && c.stream && r.OutputTokens == 0 {
				t.Fatalf("a stream cut mid-way records the tokens it delivered: %+v", r)
			}

			// The management views count it as an error of the provider
			// and the connection.
			q := url.Values{"period": {"1h"}, "model": {c.model()}}
			h := admin.get("/api/usage/history?" + q.Encode())["totals"].(map[string]any)
			if h["requests"] != 1.0 || h["errors"] != 1.0 {
				t.Fatalf("history totals %v, want 1 request, 1 error", h)
			}
			if h := admin.get("/api/usage/history?" + url.Values{"period": {"1h"}, "provider": {c.id}}.Encode())["totals"].(map[string]any); h["errors"] != 1.0 {
				t.Fatalf("history of provider %s: %v, want 1 error", c.id, h)
			}
			if u := admin.get("/api/usage/" + url.PathEscape(conn) + "?period=1h"); u["requests"] != 1.0 || u["errors"] != 1.0 {
				t.Fatalf("usage of connection %s: %v, want 1 request, 1 error", conn, u)
			}
			if p := admin.get("/api/telemetry/summary")["providers"].(map[string]any); p[c.id] != nil {
				t.Fatalf("telemetry counts a failure as a success: %v", p[c.id])
			}

			// Prometheus counts it under the status the record has.
			labels := map[string]string{"provider": c.id, "model": c.p.model, "status": fmt.Sprint(status), "modality": "chat"}
			if v := metricValue(t, reg, "omniroute_requests_total", labels); v != 1 {
				t.Fatalf("omniroute_requests_total%v = %v, want 1", labels, v)
			}

			// One warning line, with the same fields for every failure; a
			// client that left is no failure of the gateway's.
			lines := logs.warnings(t, c.id)
			if c.kind == failLeft {
				if len(lines) != 0 {
					t.Fatalf("a client that left is logged as a failure: %v", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("%d warning lines, want 1: %v", len(lines), lines)
			}
			l := lines[0]
			attempts, _ := l["attempts"].([]any)
			if l["dialect"] != c.p.dialect || l["provider"] != c.id || l["connection"] != conn || l["model"] != c.model() ||
				l["target_model"] != c.p.model || l["status"] != float64(status) || len(attempts) != 1 || l["error"] == nil || l["error"] == "" {
				t.Fatalf("warning %v", l)
			}
		})
	}
}

// send makes c's request in its dialect, as c's request id, and returns
// the HTTP status the client got (0 when it went away first).
func (c *acctCase) send(t *testing.T, gw string) int {
	t.Helper()
	path, body := c.p.request(c.model(), c.stream)
	// Every case ends well within this; past it the gateway is stuck and
	// the case fails here rather than the whole run timing out.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "POST", gw+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", c.id)
	if c.kind == failLeft && !c.stream {
		go func() {
			select {
			case <-c.seen:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if c.kind == failLeft {
			return 0
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if c.kind == failLeft {
		// The first events arrived: leave.
		if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
			t.Fatalf("the stream's first bytes: %v", err)
		}
		<-c.seen
		cancel()
		io.Copy(io.Discard, resp.Body)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
