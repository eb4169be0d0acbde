package dashboard_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// The Health page shows the response cache and idempotency as the
// gateway counts them, and clears both.
func TestHealthCacheAndIdempotency(t *testing.T) {
	e := admintest.NewEnv(t, nil)
	run(t, e)
	e.Login()
	up := newUpstream(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "fake", "type": "openai-compatible",
		"base_url": up.URL, "api_key": upstreamSecret, "models": []string{"m1"}})
	key := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "ci"}).Object(t)["key"].(string)
	p := browser.New(t).Page(t, 1280, 900)
	openLoggedIn(p, e, "health")
	p.WaitText("#idempotency-stats .stat-value", "0")

	// One cached answer, one idempotency key (kept for the idempotency
	// window, 5 s: the page is read at once).
	hdr := append(admintest.Bearer(key), "X-OmniRoute-Cache", "true", "Idempotency-Key", "order-42")
	for i := 0; i < 2; i++ {
		if r := e.Do("POST", "/v1/chat/completions", admintest.Chat("fake/m1"), hdr...); r.Status != http.StatusOK {
			t.Fatalf("chat = %d %s", r.Status, r.Body)
		}
	}
	stats := e.Want(http.StatusOK, "GET", "/api/cache/stats", nil).Object(t)
	c, i := stats["semanticCache"].(map[string]any), stats["idempotency"].(map[string]any)
	if c["memorySize"] != float64(1) || i["activeKeys"] != float64(1) {
		t.Fatalf("the requests left the cache at %v", stats)
	}
	p.Click("#nav-health")
	p.WaitText("#idempotency-stats .stat-value", "1")
	if got, want := texts(p, "#cache-stats .stat:first-child .stat-value"), fmt.Sprintf("1 / %v", c["memoryMaxSize"]); got != want {
		t.Errorf("cached answers shown %q, want %q", got, want)
	}
	if got := texts(p, "#cache-stats .stat:nth-child(6) .stat-value"); got != c["tier"] {
		t.Errorf("tier shown %q, API %v", got, c["tier"])
	}
	p.Screenshot("health-cache")
	p.Click("#cache-clear")
	p.Click("dialog[open] button[value=ok]")
	p.WaitText("#cache-feedback", "Cleared 1 in memory")
	p.WaitText("#idempotency-stats .stat-value", "0")
	if got := texts(p, "#cache-stats .stat:first-child .stat-value"); got != fmt.Sprintf("0 / %v", c["memoryMaxSize"]) {
		t.Errorf("cached answers after clearing: %q", got)
	}
	p.Screenshot("health-cleared")
	stats = e.Want(http.StatusOK, "GET", "/api/cache/stats", nil).Object(t)
	c, i = stats["semanticCache"].(map[string]any), stats["idempotency"].(map[string]any)
	if c["memorySize"] != float64(0) || i["activeKeys"] != float64(0) {
		t.Fatalf("after clearing from the page: %v", stats)
	}
}
