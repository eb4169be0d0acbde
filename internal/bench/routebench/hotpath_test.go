package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// instantTransport is the upstream of the in-process benchmarks: it
// answers every chat completion at once, without a network, so only the
// gateway's own work (decode → route → encode, both ways) is measured.
type instantTransport struct{}

func (instantTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	out, ct := completionJSON, "application/json"
	if bytes.Contains(body, []byte(`"stream":true`)) {
		out, ct = streamBody, "text/event-stream"
	}
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header:        http.Header{"Content-Type": {ct}, "Content-Length": {strconv.Itoa(len(out))}},
		ContentLength: int64(len(out)), Body: io.NopCloser(bytes.NewReader(out))}, nil
}

// hotPath is the gateway's HTTP handler, with the same middleware as
// `omni serve route`, over one openai provider served by instantTransport.
func hotPath(tb testing.TB) http.Handler {
	cfg := config.Default()
	cfg.Route.Providers = []config.RouteProvider{{ID: "bench", Type: "openai", BaseURL: "http://upstream.invalid/v1",
		APIKeys: []config.Secret{"sk-bench-upstream"}, Models: []string{upstreamModel}}}
	log := slog.New(slog.DiscardHandler)
	a, err := routeapp.New(&cfg, &http.Client{Transport: instantTransport{}}, clock.Real{}, log)
	if err != nil {
		tb.Fatal(err)
	}
	return httpx.Wrap(a.API, log, nil)
}

func serveOnce(tb testing.TB, h http.Handler, path string, body []byte, want string) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(want)) {
		tb.Fatalf("%s: status %d: %.400s", path, rec.Code, rec.Body.Bytes())
	}
}

func benchPath(b *testing.B, path string, body []byte, want string) {
	h := hotPath(b)
	serveOnce(b, h, path, body, want)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		serveOnce(b, h, path, body, want)
	}
}

func BenchmarkHotPathOpenAIToOpenAI(b *testing.B) {
	benchPath(b, "/v1/chat/completions", openAIRequest(gatewayModel, false), "Paris is 18°C")
}

func BenchmarkHotPathAnthropicToOpenAI(b *testing.B) {
	benchPath(b, "/v1/messages", anthropicRequest(gatewayModel, false), "Paris is 18°C")
}

func BenchmarkHotPathOpenAIToOpenAIStream(b *testing.B) {
	benchPath(b, "/v1/chat/completions", openAIRequest(gatewayModel, true), "[DONE]")
}

func BenchmarkHotPathAnthropicToOpenAIStream(b *testing.B) {
	benchPath(b, "/v1/messages", anthropicRequest(gatewayModel, true), "message_stop")
}

// The answers the harness checks for are what the gateway really sends.
func TestHotPathAnswers(t *testing.T) {
	h := hotPath(t)
	serveOnce(t, h, "/v1/chat/completions", openAIRequest(gatewayModel, false), "Paris is 18°C")
	serveOnce(t, h, "/v1/messages", anthropicRequest(gatewayModel, false), "Paris is 18°C")
	serveOnce(t, h, "/v1/chat/completions", openAIRequest(gatewayModel, true), `"content":"Paris is 18°C"`)
	serveOnce(t, h, "/v1/messages", anthropicRequest(gatewayModel, true), `"text_delta"`)
}
