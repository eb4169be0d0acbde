package search_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// replica is a gateway from configuration alone (search provider tv at
// up) sharing Redis under prefix.
func replica(t *testing.T, up *upstream, deps routeapp.Deps) string {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.Providers = []config.RouteProvider{{ID: "tv", Type: "tavily", BaseURL: up.URL, APIKeys: []config.Secret{"tvly-key"}}}
	deps.Clock, deps.Log = clock.Real{}, logging.Discard()
	a, err := routeapp.Open(context.Background(), &cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// With Redis, the response cache's shared tier carries search answers
// between replicas: a search answered by one is a hit on the other.
func TestSearchCacheSharedAcrossReplicas(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	up := newUpstream(t, "tavily")
	a := replica(t, up, routeapp.Deps{Redis: rc, RedisPrefix: prefix})
	b := replica(t, up, routeapp.Deps{Redis: rc, RedisPrefix: prefix})
	body := map[string]any{"query": "shared between replicas", "provider": "tv"}
	first := routetest.Send(t, http.DefaultClient, "POST", a+"/v1/search", body)
	second := routetest.Send(t, http.DefaultClient, "POST", b+"/v1/search", body)
	if first.Status != http.StatusOK || second.Status != http.StatusOK || second.Header.Get("X-OmniRoute-Cache") != "HIT" || up.n() != 1 {
		t.Fatalf("statuses %d %d, second %q, upstream calls %d: %s", first.Status, second.Status,
			second.Header.Get("X-OmniRoute-Cache"), up.n(), second.Body)
	}
	if fa, sa := decodeAnswer(t, first.Body), decodeAnswer(t, second.Body); !sa.Usage.Cached || len(sa.Results) != len(fa.Results) || sa.Results[0].URL != fa.Results[0].URL {
		t.Fatalf("first %s\nsecond %s", first.Body, second.Body)
	}
}
