package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/api"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routetest"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

var (
	ctx        = context.Background()
	masterKey  = []byte("0123456789abcdef0123456789abcdef")
	gatewayKey = "omni-test-key"
)

func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := store.New(ctx, db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sqliteStore(t *testing.T) *store.Store {
	return openStore(t, filepath.Join(t.TempDir(), "omni.db"))
}

// pricer charges 1 µUSD per input token and 2 per output token.
type pricer struct{}

// UnitCost: the tokens as Cost, and documents at $1 per 1,000.
func (p pricer) UnitCost(provider, model string, units []llm.Quantity, u llm.Usage) (float64, bool) {
	usd, ok := p.Cost(provider, model, u)
	n, _ := llm.Find(units, llm.UnitDocument)
	return usd + float64(n)/1000, ok
}

func (pricer) Cost(provider, model string, u llm.Usage) (float64, bool) {
	if provider == "" {
		return 0, false
	}
	return float64(u.InputTokens)*1e-6 + float64(u.OutputTokens)*2e-6, true
}

// refusing refuses every call, after the recorder.
type refusing struct{ err *llm.Error }

func (g refusing) Admit(ctx context.Context, _ *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	return nil, nil, g.err
}

// upstream is an OpenAI-compatible fake: known usage; keys listed in
// failKeys answer 500.
func upstream(t *testing.T, failKeys ...string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for _, k := range failKeys {
			if r.Header.Get("Authorization") == "Bearer "+k {
				http.Error(w, `{"error":{"message":"boom","type":"server_error"}}`, http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
			"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],
			"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type env struct {
	rec   *usage.Recorder
	st    *store.Store
	gw    *httptest.Server
	reg   *prometheus.Registry
	clock *clock.Fake
}

// newEnv runs a real gateway (config provider "oa" with keys) whose
// pipeline is the recorder followed by more gates, and the recorder's writer.
func newEnv(t *testing.T, up *httptest.Server, keys []string, more ...pipeline.Gate) *env {
	t.Helper()
	e := &env{st: sqliteStore(t), reg: prometheus.NewRegistry(), clock: clock.NewFake(time.Now())}
	e.rec = usage.New(usage.Options{Store: e.st, Pricer: pricer{}, Registerer: e.reg, Clock: e.clock,
		Linger: 10 * time.Millisecond, Log: logging.Discard()})
	runRecorder(t, e.rec)
	cfg := config.Default()
	var secrets []config.Secret
	for _, k := range keys {
		secrets = append(secrets, config.Secret(k))
	}
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{config.Secret(gatewayKey)}, RequireAPIKey: true,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: secrets}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	gates := append([]pipeline.Gate{e.rec}, more...)
	s := api.New(a.Router, a, api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey}, Pipeline: pipeline.Stages{Gates: gates}},
		clock.Real{}, logging.Discard())
	e.gw = httptest.NewServer(httpx.Wrap(s, logging.Discard(), nil))
	t.Cleanup(e.gw.Close)
	return e
}

func runRecorder(t *testing.T, rec *usage.Recorder) {
	c, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rec.Run(c); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (e *env) chat(t *testing.T, body string, headers ...string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// records flushes the writer and returns every stored record, newest first.
func (e *env) records(t *testing.T) []store.UsageRecord {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.rec.Flush(c); err != nil {
		t.Fatal(err)
	}
	recs, err := e.st.UsageLogs(ctx, store.UsageFilter{}, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

const hello = `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`

func TestRecordsRequestThroughGateway(t *testing.T) {
	e := newEnv(t, upstream(t), []string{"k1"})
	if code := e.chat(t, hello, "X-Session-Id", "sess-1"); code != 200 {
		t.Fatalf("status %d", code)
	}
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want exactly 1", len(recs))
	}
	r := recs[0]
	if r.Provider != "oa" || r.Connection != "oa#1" || r.TargetModel != "gpt-4o" || r.Model != "oa/gpt-4o" ||
		r.Status != 200 || r.InputTokens != 12 || r.OutputTokens != 7 || r.Estimated || r.KeyID != "config:1" ||
		r.Endpoint != "/v1/chat/completions" || r.Session != "sess-1" || r.Attempts != 1 || r.ErrorType != "" || r.LatencyMS < 0 {
		t.Fatalf("record %+v", r)
	}
	if want := 12*1e-6 + 7*2e-6; r.CostUSD < want-1e-12 || r.CostUSD > want+1e-12 {
		t.Fatalf("cost %v, want %v", r.CostUSD, want)
	}
	var attempts []map[string]any
	if err := json.Unmarshal([]byte(r.AttemptsJSON), &attempts); err != nil || len(attempts) != 1 || attempts[0]["connection"] != "oa#1" {
		t.Fatalf("attempts %s (%v)", r.AttemptsJSON, err)
	}

	// Prometheus: counted once, tokens by direction, cost, latency.
	if v := metricValue(t, e.reg, "omniroute_requests_total", map[string]string{"provider": "oa", "model": "gpt-4o", "status": "200", "modality": "chat"}); v != 1 {
		t.Fatalf("requests_total %v", v)
	}
	if v := metricValue(t, e.reg, "omniroute_tokens_total", map[string]string{"provider": "oa", "model": "gpt-4o", "direction": "output"}); v != 7 {
		t.Fatalf("output tokens %v", v)
	}
	if v := metricValue(t, e.reg, "omniroute_cost_usd_total", map[string]string{"provider": "oa", "model": "gpt-4o"}); v < 25e-6 || v > 27e-6 {
		t.Fatalf("cost_usd_total %v", v)
	}
	for _, h := range []string{"omniroute_request_duration_seconds", "omniroute_time_to_first_token_seconds"} {
		if v := metricValue(t, e.reg, h, map[string]string{"provider": "oa"}); v != 1 {
			t.Fatalf("%s count %v", h, v)
		}
	}
}

// metricValue finds one series in reg by name and labels: a counter's
// value or a histogram's sample count.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestRecordsFallbackAttempts(t *testing.T) {
	e := newEnv(t, upstream(t, "bad"), []string{"bad", "good"})
	if code := e.chat(t, hello); code != 200 {
		t.Fatalf("status %d", code)
	}
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Attempts != 2 || r.Connection != "oa#2" || r.Status != 200 || r.OutputTokens != 7 {
		t.Fatalf("record %+v", r)
	}
	var attempts []struct {
		Connection string `json:"connection"`
		Status     int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.AttemptsJSON), &attempts); err != nil || len(attempts) != 2 ||
		attempts[0].Connection != "oa#1" || attempts[0].Status != 500 || attempts[1].Connection != "oa#2" {
		t.Fatalf("attempts %s", r.AttemptsJSON)
	}

	// Every connection failing: one record with the error and both attempts.
	e2 := newEnv(t, upstream(t, "bad", "worse"), []string{"bad", "worse"})
	if code := e2.chat(t, hello); code < 500 {
		t.Fatalf("status %d", code)
	}
	recs = e2.records(t)
	if len(recs) != 1 || recs[0].Status < 500 || recs[0].Attempts != 2 || recs[0].ErrorType == "" || recs[0].ErrorMessage == "" {
		t.Fatalf("failed record %+v", recs)
	}
}

func TestRecordsRefusalOfLaterGate(t *testing.T) {
	e := newEnv(t, upstream(t), []string{"k1"}, refusing{&llm.Error{Status: 429, Type: llm.ErrRateLimit, Message: "rpm limit reached", RetryAfter: time.Second}})
	if code := e.chat(t, hello); code != 429 {
		t.Fatalf("status %d", code)
	}
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Status != 429 || r.ErrorType != string(llm.ErrRateLimit) || r.ErrorMessage != "rpm limit reached" || r.Provider != "" ||
		r.Attempts != 0 || r.CostUSD != 0 || r.Model != "oa/gpt-4o" {
		t.Fatalf("record %+v", r)
	}
	if v := metricValue(t, e.reg, "omniroute_requests_total", map[string]string{"provider": "", "model": "", "status": "429", "modality": "chat"}); v != 1 {
		t.Fatalf("requests_total{status=429} %v", v)
	}
}

func TestRecordsStream(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}`+"\n\n")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":4,"total_tokens":34}}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, up, []string{"k1"})
	if code := e.chat(t, strings.Replace(hello, `"messages"`, `"stream":true,"messages"`, 1)); code != 200 {
		t.Fatalf("status %d", code)
	}
	recs := e.records(t)
	if len(recs) != 1 || !recs[0].Stream || recs[0].InputTokens != 30 || recs[0].OutputTokens != 4 || recs[0].Status != 200 || recs[0].TTFTMS > recs[0].LatencyMS {
		t.Fatalf("stream record %+v", recs)
	}
}

// blockingStore blocks inserts until released, so the queue fills.
type blockingStore struct {
	*store.Store
	release chan struct{}
	rows    atomic.Int64
}

func (b *blockingStore) InsertUsage(ctx context.Context, recs []store.UsageRecord) error {
	<-b.release
	b.rows.Add(int64(len(recs)))
	return b.Store.InsertUsage(ctx, recs)
}

func TestQueueFullDropsAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	bs := &blockingStore{Store: sqliteStore(t), release: make(chan struct{})}
	rec := usage.New(usage.Options{Store: bs, QueueSize: 4, BatchSize: 1, Registerer: reg, Linger: time.Millisecond, Clock: clock.NewFake(time.Now())})
	_, done, _ := rec.Admit(ctx, &pipeline.Call{Model: "m", Start: time.Now()})
	// Without a writer, 4 fit and the rest are dropped at once.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); done(pipeline.Outcome{Status: 200}) }()
	}
	wg.Wait()
	if got := rec.Dropped(); got != 6 {
		t.Fatalf("dropped %d, want 6", got)
	}
	if v := metricValue(t, reg, "omniroute_usage_records_dropped_total", nil); v != 6 {
		t.Fatalf("dropped metric %v", v)
	}
	close(bs.release)
	c, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { rec.Run(c); close(stopped) }()
	cancel() // shutdown still writes what was queued
	<-stopped
	if n, _ := bs.UsageCount(ctx); n != 4 {
		t.Fatalf("%d records written at shutdown, want 4", n)
	}
}

func BenchmarkDone(b *testing.B) {
	rec := usage.New(usage.Options{Store: nil, QueueSize: 1 << 20})
	_, done, _ := rec.Admit(ctx, &pipeline.Call{KeyID: "config:1", Endpoint: "/v1/chat/completions", Model: "oa/gpt-4o", Start: time.Now()})
	o := pipeline.Outcome{Status: 200, Usage: llm.Usage{InputTokens: 10, OutputTokens: 20}, Latency: time.Second}
	drained := make(chan struct{})
	stop := make(chan struct{})
	go func() { // a consumer so the queue never fills
		defer close(drained)
		for {
			select {
			case <-stop:
				return
			default:
				rec.Drain(1024)
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		done(o)
	}
	b.StopTimer()
	close(stop)
	<-drained
	if rec.Dropped() != 0 {
		b.Fatalf("dropped %d", rec.Dropped())
	}
}

// TestWiredInApp runs the assembled gateway with a database: a request is
// recorded by the app's own writer and shows up in /api/usage/logs and
// the metrics registry; the writer stops with the app.
func TestWiredInApp(t *testing.T) {
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	up := upstream(t)
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{config.Secret(gatewayKey)}, RequireAPIKey: true, InitialPassword: "usage dashboard password",
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k1"}}}}
	reg := prometheus.NewRegistry()
	a, err := routeapp.Open(ctx, &cfg, routeapp.Deps{DB: db, MasterKey: masterKey, Metrics: reg, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(runCtx) }()

	e := &env{gw: srv}
	if code := e.chat(t, hello); code != 200 {
		t.Fatalf("status %d", code)
	}
	cancel() // shutdown writes what is queued
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	admin := routetest.Login(t, srv.URL, "usage dashboard password")
	resp, err := admin.Get(srv.URL + "/api/usage/logs")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Logs []store.UsageRecord `json:"logs"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body.Logs) != 1 || body.Logs[0].Connection != "oa#1" || body.Logs[0].OutputTokens != 7 {
		t.Fatalf("logs: %d %+v", resp.StatusCode, body.Logs)
	}
	if v := metricValue(t, reg, "omniroute_requests_total", map[string]string{"provider": "oa", "model": "gpt-4o", "status": "200", "modality": "chat"}); v != 1 {
		t.Fatalf("requests_total %v", v)
	}
	resp, err = admin.Get(srv.URL + "/api/monitoring/health")
	if err != nil {
		t.Fatal(err)
	}
	var h usage.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.ConfiguredCount != 1 || h.ActiveCount != 1 || h.MonitoredCount != 1 || h.CatalogCount < 10 || h.Status != "ok" {
		t.Fatalf("health %+v", h)
	}
}

// Whatever reaches the recorder — a model name a dialect let through, an
// upstream's long error, a long attempt list — is stored cut to bounded
// sizes.
func TestStoredStringsAreBounded(t *testing.T) {
	e := newEnv(t, upstream(t), []string{"k1"})
	long := strings.Repeat("é", 1<<15) // 64 KiB of two-byte runes
	_, done, _ := e.rec.Admit(ctx, &pipeline.Call{KeyID: long, Endpoint: "/v1beta/models/" + long, Model: long, Session: long, Start: time.Now()})
	var attempts []router.Attempt
	for range 100 {
		attempts = append(attempts, router.Attempt{Provider: long, Model: long, Connection: long, Status: 404, Error: long})
	}
	done(pipeline.Outcome{Status: 404, Err: &llm.Error{Status: 404, Type: llm.ErrNotFound, Message: long},
		Target: router.Target{Provider: long, Model: long}, Connection: long, Attempts: attempts})
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	for name, s := range map[string]string{"key": r.KeyID, "endpoint": r.Endpoint, "model": r.Model, "session": r.Session,
		"provider": r.Provider, "target model": r.TargetModel, "connection": r.Connection, "error": r.ErrorMessage} {
		if len(s) > 512 || !utf8.ValidString(s) {
			t.Errorf("%s stored with %d bytes (valid UTF-8: %v)", name, len(s), utf8.ValidString(s))
		}
	}
	if len(r.AttemptsJSON) > 16<<10 || !json.Valid([]byte(r.AttemptsJSON)) || r.Attempts != 100 {
		t.Errorf("attempts stored as %d bytes of JSON (valid: %v), count %d", len(r.AttemptsJSON), json.Valid([]byte(r.AttemptsJSON)), r.Attempts)
	}
}

// Target model names under a configured provider are the client's to
// choose: the metrics label a bounded number of them and count the rest
// under "other".
func TestMetricLabelsAreBounded(t *testing.T) {
	e := newEnv(t, upstream(t), []string{"k1"})
	const n = 3000
	for i := range n {
		_, done, _ := e.rec.Admit(ctx, &pipeline.Call{Model: "oa/x", Start: time.Now()})
		done(pipeline.Outcome{Status: 404, Err: &llm.Error{Status: 404, Type: llm.ErrNotFound, Message: "no such model"},
			Target: router.Target{Provider: "oa", Model: fmt.Sprintf("model-%d", i)}, Connection: "oa#1"})
	}
	e.records(t)
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series int
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "omniroute_requests_total" {
			series = len(mf.GetMetric())
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if series > 1001 || total != n {
		t.Fatalf("%d distinct target models: %d series counting %v requests", n, series, total)
	}
	if v := metricValue(t, e.reg, "omniroute_requests_total", map[string]string{"provider": "oa", "model": "other", "status": "404", "modality": "chat"}); v < n-1000 {
		t.Fatalf("other: %v", v)
	}
}

// A call of a modality beyond chat is counted under its modality, and
// what it used under its unit; chat is counted as "chat".
func TestMetricsModalityAndUnits(t *testing.T) {
	e := newEnv(t, upstream(t), []string{"k1"})
	c := &pipeline.Call{KeyID: "config:1", Endpoint: "/v1/rerank", Model: "co/rerank-v3.5", Start: e.clock.Now(),
		Modality: llm.ModalityRerank, Units: []llm.Quantity{{Unit: llm.UnitDocument, N: 40}}}
	_, done, err := e.rec.Admit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	done(pipeline.Outcome{Status: 200, Target: router.Target{Provider: "co", Model: "rerank-v3.5"}, Connection: "co#1",
		Units: []llm.Quantity{{Unit: llm.UnitDocument, N: 40}}})
	if recs := e.records(t); len(recs) != 1 || recs[0].Modality != "rerank" || recs[0].Quantity != 40 {
		t.Fatalf("records %+v", recs)
	}
	if v := metricValue(t, e.reg, "omniroute_requests_total", map[string]string{"provider": "co", "model": "rerank-v3.5", "status": "200", "modality": "rerank"}); v != 1 {
		t.Fatalf("requests_total %v", v)
	}
	if v := metricValue(t, e.reg, "omniroute_units_total", map[string]string{"provider": "co", "model": "rerank-v3.5", "modality": "rerank", "unit": "document"}); v != 40 {
		t.Fatalf("units_total %v", v)
	}
}
