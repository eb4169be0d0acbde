package dashboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

const upstreamSecret = "sk-upstream-secret-7f3a9c"

// The flow, in a real browser: first-run setup → add a provider
// pointing at a fake upstream → test it → create a key → the playground's
// answer appears incrementally → the request shows up in the usage
// charts and logs → trip and reset a breaker → log out. A screenshot per
// page.
func TestDashboardFlow(t *testing.T) {
	e, token := freshGateway(t)
	up := newUpstream(t)
	b := browser.New(t)
	p := b.Page(t, 1280, 900)

	// First run: / leads to the dashboard's setup form.
	p.Navigate(e.Srv.URL + "/")
	p.WaitVisible("#setup-form")
	p.Screenshot("setup")
	p.SetValue("#setup-token", token)
	p.SetValue("#setup-password", "a long dashboard password")
	p.Click("#setup-submit")

	// Providers: add one pointing at the fake upstream, then test it.
	p.WaitVisible("#provider-form")
	p.WaitText("#providers-list", "No providers yet")
	// A known service from the catalog fills in the name and type.
	p.SetValue("#provider-service", "groq")
	if id := p.Eval(`document.getElementById("provider-id").value + " " + document.getElementById("provider-type").value`); id != "groq openai-compatible" {
		t.Errorf("choosing groq from the catalog filled in %q", id)
	}
	p.SetValue("#provider-id", "fake")
	p.SetValue("#provider-type", "openai-compatible")
	p.SetValue("#provider-url", up.URL)
	p.SetValue("#provider-key", upstreamSecret)
	p.SetValue("#provider-models", "m1")
	p.Click("#provider-add")
	p.WaitVisible("#test-btn-fake")
	p.Click("#test-btn-fake")
	p.WaitText("#test-fake", "OK")
	if html := p.Eval("document.documentElement.outerHTML").(string); strings.Contains(html, upstreamSecret) {
		t.Error("the provider's key came back to the page after saving")
	}
	p.Screenshot("providers")

	// Keys: the raw key is shown once.
	p.Click("#nav-keys")
	p.WaitVisible("#key-form")
	p.SetValue("#key-name", "playground")
	p.Click("#key-create")
	raw := p.WaitText("#key-raw", "sk-")
	p.WaitText("#keys-list", "playground")
	p.Screenshot("keys")

	// Playground: the answer streams in word by word.
	p.Click("#nav-playground")
	p.WaitVisible("#pg-form")
	p.SetValue("#pg-model", "fake/m1")
	p.SetValue("#pg-message", "Say hello")
	p.Click("#pg-send")
	full := strings.Join(streamWords, "")
	var partial []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := p.Eval(`document.getElementById("pg-answer").textContent`).(string)
		if got != "" && got != full && (len(partial) == 0 || partial[len(partial)-1] != got) {
			partial = append(partial, got)
		}
		if got == full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answer never completed: %q", got)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if len(partial) < 2 {
		t.Errorf("the answer did not appear incrementally: partial states %q", partial)
	}
	p.WaitText("#pg-target", "fake/m1")
	p.WaitText("#pg-attempts", "fake")
	p.Screenshot("playground")

	// Usage: the request is in the charts' totals and in the log.
	p.Click("#nav-usage")
	p.WaitText("#usage-logs", "m1")
	p.WaitText("#usage-totals .stat-value", "1") // requests
	p.WaitText("#usage-groups", "fake")
	// The charts are drawn once the page is on screen and push what is
	// below them down: click only when they are in place.
	p.WaitVisible("#chart-requests canvas")
	p.WaitVisible("#chart-cost canvas")
	p.Click("#by-key")
	p.WaitText("#usage-groups", "playground")
	// The live tail shows a new request without a reload.
	if r := e.Do("POST", "/v1/chat/completions", admintest.Chat("fake/m1"), admintest.Bearer(raw)...); r.Status != 200 {
		t.Fatalf("chat = %d %s", r.Status, r.Body)
	}
	p.WaitText("#tail-list", "fake/m1")
	// A moderation shows what it used in its own unit.
	if r := e.Do("POST", "/v1/moderations", map[string]any{"model": "fake/omni-moderation-latest", "input": "hello"}, admintest.Bearer(raw)...); r.Status != 200 {
		t.Fatalf("moderation = %d %s", r.Status, r.Body)
	}
	p.WaitText("#tail-list", "moderation · 1 input")
	p.Screenshot("usage")
	// The breakdown by modality and by unit; a modality filters the page.
	p.Click("#by-modality")
	p.WaitText("#usage-groups", "moderation")
	p.WaitText("#usage-groups", "chat")
	p.Click(`#usage-groups a[href*="modality=moderation"]`)
	p.WaitText("#usage-logs", "omni-moderation-latest")
	p.Click("#by-unit")
	p.WaitText("#usage-groups", "1 input")
	if logs := p.Eval(`document.getElementById("usage-logs").textContent`).(string); strings.Contains(logs, "fake/m1") {
		t.Errorf("the moderation-only log lists a chat: %q", logs)
	}
	p.Screenshot("usage-modality")

	// Health: trip the breaker with failing calls, then reset it.
	p.Eval(`fetch("/api/resilience", {method: "PATCH", headers: {"Content-Type": "application/json"}, body: JSON.stringify({breaker_threshold: 1})}).then(r => r.status)`)
	up.setBroken(true)
	for i := 0; i < 2; i++ {
		r := e.Do("POST", "/v1/chat/completions", admintest.Chat("fake/m1"), admintest.Bearer(raw)...)
		if r.Status < 500 {
			t.Fatalf("a broken upstream answered %d", r.Status)
		}
	}
	up.setBroken(false)
	p.Click("#nav-health")
	p.WaitText("#breakers", "open")
	p.Screenshot("health-open")
	p.Click("#reset-fake")
	p.WaitText("#breakers", "All breakers closed")
	p.Screenshot("health-reset")

	// Log out: back to the login form.
	p.Click("#logout")
	p.WaitVisible("#login-form")
	p.Screenshot("login")
}
