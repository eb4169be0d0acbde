package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/metrics"
	"github.com/omniedge/omni/internal/platform/sqldb"
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

// localRequest is a request as `omni serve route` gets it from a client
// on its own host (httptest's default peer is not a loopback address):
// such clients need no key unless the gateway requires one.
func localRequest(method, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr, req.Host = "127.0.0.1:40000", "localhost:20128"
	return req
}

func serveOnce(tb testing.TB, h http.Handler, path string, body []byte, want string) {
	req := localRequest(http.MethodPost, path, bytes.NewReader(body))
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

// featurePath is the gateway as `omni serve route` builds it over a SQLite
// database, with a managed key carrying RPM/TPM limits and a budget (as
// -features sets up), the usage writer running, and the same middleware and
// metrics; it returns the handler and the raw key.
func featurePath(tb testing.TB) (http.Handler, string) {
	cfg := config.Default()
	cfg.Route.InitialPassword = featurePassword
	cfg.Route.Providers = []config.RouteProvider{{ID: "bench", Type: "openai", BaseURL: "http://upstream.invalid/v1",
		APIKeys: []config.Secret{"sk-bench-upstream"}, Models: []string{upstreamModel}}}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqldb.Open(ctx, filepath.Join(tb.TempDir(), "omni.db"))
	if err != nil {
		tb.Fatal(err)
	}
	reg := metrics.NewRegistry()
	a, err := routeapp.Open(ctx, &cfg, routeapp.Deps{DB: db, HTTP: &http.Client{Transport: instantTransport{}},
		MasterKey: []byte("0123456789abcdef0123456789abcdef"), Clock: clock.Real{}, Log: log, Metrics: reg})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done; db.Close() })
	h := httpx.Wrap(a.Handler(), log, httpx.NewMetrics(reg, "route"))

	var cookie string
	manage := func(path string, body any, out any) {
		b, _ := json.Marshal(body)
		req := localRequest(http.MethodPost, path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			tb.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body.Bytes())
		}
		if c := rec.Result().Cookies(); len(c) > 0 {
			cookie = c[0].Name + "=" + c[0].Value
		}
		if out != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				tb.Fatal(err)
			}
		}
	}
	manage("/api/auth/login", map[string]string{"password": featurePassword}, nil)
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	manage("/api/keys", map[string]any{"name": "bench", "rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
		"rpd": 1_000_000_000, "tpd": 1_000_000_000_000}, &key)
	manage("/api/usage/budget", map[string]any{"apiKeyId": key.ID, "monthlyLimitUsd": 1_000_000,
		"dailyLimitUsd": 1_000_000, "warningThreshold": 0.8, "resetInterval": "monthly"}, nil)
	return h, key.Key
}

// BenchmarkHotPathFeatures is the -features path in process, in parallel:
// what keys with limits and a budget, usage logging, resilience, the cache
// and idempotency cost per request, without the network.
func BenchmarkHotPathFeatures(b *testing.B) {
	h, key := featurePath(b)
	body, want := openAIRequest(gatewayModel, false), []byte("Paris is 18°C")
	call := func() bool {
		req := localRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), want) {
			b.Errorf("status %d: %.400s", rec.Code, rec.Body.Bytes())
			return false
		}
		return true
	}
	if !call() {
		return
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() && call() {
		}
	})
}

// BenchmarkHotPathPlainParallel is BenchmarkHotPathOpenAIToOpenAI in
// parallel, the reference for BenchmarkHotPathFeatures.
func BenchmarkHotPathPlainParallel(b *testing.B) {
	h := hotPath(b)
	body := openAIRequest(gatewayModel, false)
	serveOnce(b, h, "/v1/chat/completions", body, "Paris is 18°C")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := localRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("status %d: %.400s", rec.Code, rec.Body.Bytes())
				return
			}
		}
	})
}
