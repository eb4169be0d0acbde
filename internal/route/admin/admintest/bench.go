package admintest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// Bench is what the gateway's benchmarks measure against: a whole
// gateway on SQLite, running (its modules' loops too) behind a real
// listener, with an instant OpenAI upstream as provider "p" (model
// "p/m").
type Bench struct {
	URL string       // the gateway
	Key string       // a gateway key
	C   *http.Client // logged in to the management API
}

// NewBench starts a Bench; everything stops at the end of tb.
func NewBench(tb testing.TB) Bench {
	tb.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	}))
	tb.Cleanup(up.Close)
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	cfg.Route.InitialPassword = Password
	db, err := sqldb.Open(context.Background(), filepath.Join(tb.TempDir(), "omni.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: MasterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	tb.Cleanup(func() { srv.Close(); cancel(); <-done })
	c := routetest.Login(tb, srv.URL, Password)
	if r := routetest.Send(tb, c, "POST", srv.URL+"/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-p-upstream"}); r.Status != http.StatusCreated {
		tb.Fatalf("provider: %d %s", r.Status, r.Body)
	}
	r := routetest.Send(tb, c, "POST", srv.URL+"/api/keys", map[string]any{"name": "bench"})
	if r.Status != http.StatusCreated {
		tb.Fatalf("key: %d %s", r.Status, r.Body)
	}
	return Bench{URL: srv.URL, Key: r.Object(tb)["key"].(string), C: c}
}
