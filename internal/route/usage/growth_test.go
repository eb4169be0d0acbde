package usage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// heap is the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// dbSize is the SQLite database with its write-ahead log.
func dbSize(t *testing.T, path string) int64 {
	t.Helper()
	var n int64
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Two thousand requests (200 under the race detector) naming megabyte
// models, through every body dialect, with model lockouts on and a fresh session id each, grow
// neither the gateway's memory nor its database by more than a few MB:
// the names are refused at decode, and nothing a client names is kept
// unbounded.
func TestMegabyteModelNamesDoNotGrowMemoryOrDatabase(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"message":"model not found","type":"invalid_request_error"}}`)
	}))
	t.Cleanup(up.Close)
	cfg := config.Default()
	cfg.Route.InitialPassword = "correct horse battery"
	cfg.Route.RequireAPIKey = true
	cfg.Route.APIKeys = []config.Secret{"config-key-1"}
	cfg.Route.Providers = []config.RouteProvider{{ID: "a", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k1", "k2"}}}
	path := filepath.Join(t.TempDir(), "omni.db")
	db, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: []byte("0123456789abcdef0123456789abcdef"),
		Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		db.Close()
	})
	jar, _ := cookiejar.New(nil)
	admin := &http.Client{Jar: jar}
	if r := routetest.Send(t, admin, "POST", srv.URL+"/api/auth/login", map[string]string{"password": "correct horse battery"}); r.Status != 200 {
		t.Fatalf("login %d %s", r.Status, r.Body)
	}
	if r := routetest.Send(t, admin, "PATCH", srv.URL+"/api/resilience", map[string]any{"lockout_enabled": true}); r.Status != 200 {
		t.Fatalf("lockouts %d %s", r.Status, r.Body)
	}
	// Warm up every path once with an ordinary name, then measure.
	name := "a/" + strings.Repeat("m", 1<<20)
	bodies := []struct{ path, format string }{
		{"/v1/chat/completions", `{"model":%q,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/messages", `{"model":%q,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":%q,"input":"hi"}`},
		{"/api/chat", `{"model":%q,"stream":false,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/embeddings", `{"model":%q,"input":"hi"}`},
	}
	huge := make([][]byte, len(bodies)) // built once: the requests differ in their session only
	for i, b := range bodies {
		huge[i] = fmt.Appendf(nil, b.format, name)
	}
	send := func(i int, model string) {
		b := bodies[i%len(bodies)]
		body := huge[i%len(bodies)]
		if model != name {
			body = fmt.Appendf(nil, b.format, model)
		}
		req, _ := http.NewRequest("POST", srv.URL+b.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer config-key-1")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Session-Id", fmt.Sprintf("session-%d-%s", i, strings.Repeat("s", 200)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// settle sends an ordinary request and waits for its usage record:
	// records are written in order, so every earlier one is stored.
	settle := func(tag int) {
		model := fmt.Sprintf("a/sentinel-%d", tag)
		send(0, model)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := routetest.Send(t, admin, "GET", srv.URL+"/api/usage/logs?limit=1", nil)
			if strings.Contains(string(r.Body), `"model":"`+model+`"`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the record of %s never came: %s", model, r.Body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range bodies {
		send(i, "a/warm-up")
	}
	settle(-1)
	heap0, db0 := heap(), dbSize(t, path)
	const limit = 4 << 20
	// The time is bounded: on a loaded machine fewer requests are sent,
	// and the bounds still hold for those.
	deadline := time.Now().Add(2 * time.Minute)
	n := 2000
	if raceEnabled {
		n = 200 // decoding 2 GB of JSON under the race detector takes many minutes
	}
	sent := 0
	for i := range n {
		send(i, name)
		if i%200 == 199 {
			settle(i)
			if d := dbSize(t, path) - db0; d > limit {
				t.Fatalf("after %d requests the database grew by %d bytes", i+1, d)
			}
		}
		if sent = i + 1; time.Now().After(deadline) {
			t.Logf("sent %d of %d requests in the time given", sent, n)
			break
		}
	}
	settle(n)
	d, h := dbSize(t, path)-db0, heap()
	t.Logf("after %d requests: database %+d bytes, live heap %+d bytes", sent, d, int64(h)-int64(heap0))
	if d > limit {
		t.Fatalf("after %d requests the database grew by %d bytes", sent, d)
	}
	if h > heap0 && h-heap0 > 2*limit {
		t.Fatalf("after %d requests the heap grew from %d to %d bytes", sent, heap0, h)
	}
}
