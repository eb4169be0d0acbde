package usage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

func TestGroupsSQLite(t *testing.T) { runGroups(t, sqliteStore(t)) }

func TestGroupsPostgres(t *testing.T) { runGroups(t, openStore(t, testenv.Postgres(t))) }

// /api/usage/groups sums a period's records per provider, model or key,
// most requests first, with the logs' filters.
func runGroups(t *testing.T, st *store.Store) {
	seed(t, st)
	rec := usage.New(usage.Options{Store: st, Clock: clock.NewFake(now), Log: logging.Discard()})
	mux := http.NewServeMux()
	rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a := client{t, srv}

	summary := func(path string) string {
		t.Helper()
		var parts []string
		for _, g := range a.get(path)["groups"].([]any) {
			m := g.(map[string]any)
			parts = append(parts, fmt.Sprintf("%s:%v/%v/%v", m["key"], m["requests"], m["errors"], m["inputTokens"]))
		}
		return strings.Join(parts, " ")
	}
	for path, want := range map[string]string{
		"/api/usage/groups?by=provider&period=24h":          "oa:3/0/130 :1/1/0 cl:1/1/0",
		"/api/usage/groups?by=provider&period=30d":          "oa:4/0/1130 :1/1/0 cl:1/1/0",
		"/api/usage/groups?by=key&period=24h":               "k1:4/2/110 k2:1/0/20",
		"/api/usage/groups?by=model&period=1h":              "cl/sonnet:2/2/0 oa/gpt-4o:1/0/10 smart:1/0/20",
		"/api/usage/groups?by=model&period=24h&apiKeyId=k2": "smart:1/0/20",
		"/api/usage/groups?by=key&period=24h&provider=cl":   "k1:1/1/0",
	} {
		if got := summary(path); got != want {
			t.Errorf("GET %s = %q, want %q", path, got, want)
		}
	}
	for _, path := range []string{"/api/usage/groups", "/api/usage/groups?by=endpoint", "/api/usage/groups?by=key&period=1y"} {
		if code, _ := a.do("GET", path, ""); code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", path, code)
		}
	}
}
