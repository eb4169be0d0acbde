package webhooks_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// benchGateway is a whole gateway on SQLite with an instant upstream and
// hooks webhooks subscribed to "*"; it returns its URL, a gateway key and
// emit, which makes two events (a key created and revoked).
func benchGateway(b *testing.B, hooks int, sink string) (string, string, func()) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	b.Cleanup(up.Close)
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.Route.InitialPassword = admintest.Password
	db, err := sqldb.Open(context.Background(), filepath.Join(b.TempDir(), "omni.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: admintest.MasterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	b.Cleanup(func() { srv.Close(); cancel(); <-done })
	c := routetest.Login(b, srv.URL, admintest.Password)
	if r := routetest.Send(b, c, "POST", srv.URL+"/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-p"}); r.Status != 201 {
		b.Fatalf("provider: %d %s", r.Status, r.Body)
	}
	for range hooks {
		if r := routetest.Send(b, c, "POST", srv.URL+"/api/webhooks", map[string]any{"url": sink, "events": []string{"*"}}); r.Status != 201 {
			b.Fatalf("webhook: %d %s", r.Status, r.Body)
		}
	}
	r := routetest.Send(b, c, "POST", srv.URL+"/api/keys", map[string]any{"name": "bench"})
	if r.Status != 201 {
		b.Fatalf("key: %d %s", r.Status, r.Body)
	}
	emit := func() {
		r := routetest.Send(b, c, "POST", srv.URL+"/api/keys", map[string]any{"name": "churn"})
		if r.Status != 201 {
			return
		}
		routetest.Send(b, c, "DELETE", srv.URL+"/api/keys/"+r.Object(b)["id"].(string), nil)
	}
	return srv.URL, r.Object(b)["key"].(string), emit
}

// BenchmarkChatWebhooks: the p50 of a chat request through a gateway
// with 100 webhooks subscribed to every event, against one with none,
// interleaved in one run (p50-none-µs, p50-100hooks-µs, ratio). While
// the chats are measured both gateways create and revoke a key every
// 20 ms, so the one with webhooks delivers 10,000 events a second to its
// subscribers (the other does the same work with none to deliver to).
func BenchmarkChatWebhooks(b *testing.B) {
	var delivered atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(sink.Close)
	urlNone, keyNone, emitNone := benchGateway(b, 0, sink.URL)
	urlHooks, keyHooks, emitHooks := benchGateway(b, 100, sink.URL)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	chat := func(url, key string) time.Duration {
		start := time.Now()
		r := routetest.Send(b, hc, "POST", url+"/v1/chat/completions", admintest.Chat("p/m"), admintest.Bearer(key)...)
		if r.Status != 200 {
			b.Fatalf("chat: %d %s", r.Status, r.Body)
		}
		return time.Since(start)
	}
	for range 50 { // warm both
		chat(urlNone, keyNone)
		chat(urlHooks, keyHooks)
	}
	var none, hooks []time.Duration
	stop, churned := make(chan struct{}), make(chan struct{})
	go func() { // bounded: at most 30,000 rounds (10 minutes), ends with the loop
		defer close(churned)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for range 30_000 {
			select {
			case <-stop:
				return
			case <-t.C:
				emitNone()
				emitHooks()
			}
		}
	}()
	b.ResetTimer()
	start, before := time.Now(), delivered.Load()
	for i := range b.N {
		if i%2 == 0 {
			none = append(none, chat(urlNone, keyNone))
			hooks = append(hooks, chat(urlHooks, keyHooks))
		} else {
			hooks = append(hooks, chat(urlHooks, keyHooks))
			none = append(none, chat(urlNone, keyNone))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(delivered.Load()-before)/time.Since(start).Seconds(), "deliveries/s")
	close(stop)
	<-churned
	p50 := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds())
	}
	pn, ph := p50(none), p50(hooks)
	b.ReportMetric(pn, "p50-none-µs")
	b.ReportMetric(ph, "p50-100hooks-µs")
	b.ReportMetric(ph/pn, "ratio")
}
