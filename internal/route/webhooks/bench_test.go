package webhooks_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/routetest"
)

// benchGateway is a whole gateway on SQLite with an instant upstream and
// hooks webhooks subscribed to "*"; it returns its URL, a gateway key and
// emit, which makes two events (a key created and revoked).
func benchGateway(b *testing.B, hooks int, sink string) (string, string, func()) {
	g := admintest.NewBench(b)
	for range hooks {
		if r := routetest.Send(b, g.C, "POST", g.URL+"/api/webhooks", map[string]any{"url": sink, "events": []string{"*"}}); r.Status != 201 {
			b.Fatalf("webhook: %d %s", r.Status, r.Body)
		}
	}
	emit := func() {
		r := routetest.Send(b, g.C, "POST", g.URL+"/api/keys", map[string]any{"name": "churn"})
		if r.Status != 201 {
			return
		}
		routetest.Send(b, g.C, "DELETE", g.URL+"/api/keys/"+r.Object(b)["id"].(string), nil)
	}
	return g.URL, g.Key, emit
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
