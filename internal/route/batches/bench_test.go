package batches_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/routetest"
)

// benchGateway is a whole gateway on SQLite behind a real listener with
// an instant OpenAI upstream; it returns the gateway's URL and a key.
func benchGateway(tb testing.TB) (string, string) {
	g := admintest.NewBench(tb)
	return g.URL, g.Key
}

// chatOnce sends one chat completion and returns how long it took.
func chatOnce(tb testing.TB, hc *http.Client, url, key string) time.Duration {
	start := time.Now()
	r := routetest.Send(tb, hc, "POST", url+"/v1/chat/completions", admintest.Chat("p/m"), admintest.Bearer(key)...)
	if r.Status != 200 {
		tb.Fatalf("chat: %d %s", r.Status, r.Body)
	}
	return time.Since(start)
}

// interactiveRate is the chat requests per second clients at once
// complete, n in all.
func interactiveRate(tb testing.TB, hc *http.Client, url, key string, clients, n int) float64 {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				chatOnce(tb, hc, url, key)
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// latencies are one client's chat latencies, sequential requests until
// stop is closed (at least least requests).
func latencies(tb testing.TB, hc *http.Client, url, key string, least int, stop <-chan struct{}) []time.Duration {
	var lat []time.Duration
	for i := 0; ; i++ {
		if i >= least {
			select {
			case <-stop:
				return lat
			default:
			}
		}
		if i > 1_000_000 {
			tb.Fatal("no end")
		}
		lat = append(lat, chatOnce(tb, hc, url, key))
	}
}

func p99(lat []time.Duration) time.Duration {
	lat = slices.Clone(lat)
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}

// runBatch runs a batch of n chat lines and returns its lines per
// second, from batches.new to completed.
func runBatch(tb testing.TB, c openai.Client, n int) float64 {
	fid := upload(tb, c, chatInput(n, "p/m"))
	start := time.Now()
	b := pollEvery(tb, c, newBatch(tb, c, fid).ID, 100*time.Millisecond)
	el := time.Since(start)
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Completed != int64(n) {
		tb.Fatalf("batch %s %+v", b.Status, b.RequestCounts)
	}
	return float64(n) / el.Seconds()
}

// BenchmarkBatchVersusInteractive measures, in one run against an
// instant upstream: the gateway's interactive maximum rate (8 clients
// at once), a 10,000-line batch's rate alone, and one interactive
// client's chat p99 without and with a 10,000-line batch running.
//
//	go test ./internal/route/batches -run '^$' -bench BatchVersusInteractive -benchtime 1x
func BenchmarkBatchVersusInteractive(b *testing.B) {
	url, key := benchGateway(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	c := openai.NewClient(ooption.WithBaseURL(url+"/v1/"), ooption.WithAPIKey(key), ooption.WithMaxRetries(0))
	const lines = 10_000
	closed := make(chan struct{})
	close(closed)
	for b.Loop() {
		interactiveRate(b, hc, url, key, 8, 500) // warm up
		// The machine is shared: each baseline is taken before and after
		// what it is compared with, and the two averaged or pooled.
		rateI := interactiveRate(b, hc, url, key, 8, 4000)
		rateB := runBatch(b, c, lines)
		rateI = (rateI + interactiveRate(b, hc, url, key, 8, 4000)) / 2

		alone := latencies(b, hc, url, key, 1500, closed)
		fid := upload(b, c, chatInput(lines, "p/m"))
		batch := newBatch(b, c, fid)
		// The client's latency while the batch runs: 3,000 requests once
		// the batch is under way, then the batch finishes alone.
		var before int64
		for {
			got, err := c.Batches.Get(context.Background(), batch.ID)
			if err != nil {
				b.Fatal(err)
			}
			if got.Status == openai.BatchStatusInProgress {
				before = got.RequestCounts.Completed + got.RequestCounts.Failed
				break
			}
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		start := time.Now()
		with := latencies(b, hc, url, key, 3000, closed)
		during := time.Since(start)
		mid, err := c.Batches.Get(context.Background(), batch.ID)
		if err != nil || mid.Status != openai.BatchStatusInProgress {
			b.Fatalf("the batch was not running throughout: %v %v", err, mid.Status)
		}
		rateBusy := float64(mid.RequestCounts.Completed+mid.RequestCounts.Failed-before) / during.Seconds()
		if res := pollEvery(b, c, batch.ID, 100*time.Millisecond); res.Status != openai.BatchStatusCompleted {
			b.Fatalf("batch %s", res.Status)
		}
		alone = append(alone, latencies(b, hc, url, key, 1500, closed)...)
		pa, pw := p99(alone), p99(with)
		b.ReportMetric(rateI, "interactive-req/s")
		b.ReportMetric(rateB, "batch-lines/s")
		b.ReportMetric(rateB/rateI, "batch/interactive")
		b.ReportMetric(float64(pa.Microseconds())/1000, "p99-alone-ms")
		b.ReportMetric(float64(pw.Microseconds())/1000, "p99-with-batch-ms")
		b.ReportMetric(float64(pw)/float64(pa), "p99-ratio")
		b.ReportMetric(rateBusy, "batch-lines/s-with-client")
		b.Logf("interactive %.0f req/s; batch alone %.0f lines/s (%.2f×); p99 alone %v (%d requests), with a batch %v (%.2f×, %d requests); batch beside the client %.0f lines/s",
			rateI, rateB, rateB/rateI, pa, len(alone), pw, float64(pw)/float64(pa), len(with), rateBusy)
	}
}
