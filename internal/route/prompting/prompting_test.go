package prompting_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// upstream is a fake provider speaking OpenAI chat, Anthropic Messages
// and Gemini generateContent, recording the bodies it received.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/chat/completions"):
			io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
		case strings.HasSuffix(r.URL.Path, "/v1/messages"):
			io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)
		case strings.HasSuffix(r.URL.Path, ":generateContent"):
			io.WriteString(w, `{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"message":"no such path"}}`)
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) calls() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.bodies) }

// last returns the body of the last request the upstream received.
func (u *upstream) last(t *testing.T) string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return u.bodies[len(u.bodies)-1]
}

// gateway is a gateway logged in to its management API with three
// providers at one fake upstream: "oa" (OpenAI), "an" (Anthropic) and
// "gm" (Gemini).
func gateway(t *testing.T) (*admintest.Env, *upstream) {
	e := admintest.Running(t, nil)
	u := newUpstream(t)
	for _, p := range []struct{ id, typ, base, model string }{
		{"oa", "openai", u.URL + "/v1", "gpt-x"},
		{"an", "anthropic", u.URL, "claude-x"},
		{"gm", "gemini", u.URL + "/v1beta", "gemini-x"},
	} {
		e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": p.id, "type": p.typ,
			"base_url": p.base, "api_key": "sk-" + p.id + "-upstream-key", "models": []string{p.model}})
	}
	return e, u
}

// dialects are one request of each client dialect to model, with a
// system prompt of its own ("client-sys").
func dialects(model string) []struct{ name, path, body string } {
	return []struct{ name, path, body string }{
		{"openai", "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"system","content":"client-sys"},{"role":"user","content":"hello"}]}`, model)},
		{"anthropic", "/v1/messages", fmt.Sprintf(`{"model":%q,"max_tokens":100,"system":"client-sys","messages":[{"role":"user","content":"hello"}]}`, model)},
		{"responses", "/v1/responses", fmt.Sprintf(`{"model":%q,"instructions":"client-sys","input":"hello"}`, model)},
		{"gemini", "/v1beta/models/" + model + ":generateContent", `{"systemInstruction":{"parts":[{"text":"client-sys"}]},"contents":[{"role":"user","parts":[{"text":"hello"}]}]}`},
		{"ollama", "/api/chat", fmt.Sprintf(`{"model":%q,"stream":false,"messages":[{"role":"system","content":"client-sys"},{"role":"user","content":"hello"}]}`, model)},
	}
}

// The global system prompt reaches the upstream from every dialect,
// before or after the client's own as its mode says, but not for a key
// that opted out, and not once disabled.
func TestSystemPromptInEveryDialect(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	outID, outRaw := e.CreateKey(map[string]any{"name": "opted-out"})

	got := e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "GLOBAL-RULES",
		"exclude_keys": []string{outID}}).Object(t)
	if got["mode"] != "prepend" || got["prompt"] != "GLOBAL-RULES" || got["enabled"] != true {
		t.Fatalf("PUT answered %v", got)
	}
	// Before and after the client's own system prompt; the upstream is
	// each of the three formats.
	for _, mode := range []string{"prepend", "append"} {
		e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"mode": mode})
		for _, model := range []string{"oa/gpt-x", "an/claude-x", "gm/gemini-x"} {
			for _, d := range dialects(model) {
				e.Want(http.StatusOK, "POST", d.path, d.body, admintest.Bearer(raw)...)
				body := u.last(t)
				g, c := strings.Index(body, "GLOBAL-RULES"), strings.Index(body, "client-sys")
				if g < 0 || c < 0 || (mode == "prepend") != (g < c) {
					t.Fatalf("%s client to %s, mode %s: the upstream received %s", d.name, model, mode, body)
				}
				e.Want(http.StatusOK, "POST", d.path, d.body, admintest.Bearer(outRaw)...)
				if body := u.last(t); strings.Contains(body, "GLOBAL-RULES") || !strings.Contains(body, "client-sys") {
					t.Fatalf("%s client with the opted-out key: the upstream received %s", d.name, body)
				}
			}
		}
	}
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": false})
	for _, d := range dialects("oa/gpt-x") {
		e.Want(http.StatusOK, "POST", d.path, d.body, admintest.Bearer(raw)...)
		if body := u.last(t); strings.Contains(body, "GLOBAL-RULES") {
			t.Fatalf("%s client, prompt disabled: the upstream received %s", d.name, body)
		}
	}
	if got := e.Want(http.StatusOK, "GET", "/api/settings/system-prompt", nil).Object(t); got["enabled"] != false ||
		got["prompt"] != "GLOBAL-RULES" || got["mode"] != "append" || fmt.Sprint(got["exclude_keys"]) != "["+outID+"]" {
		t.Fatalf("GET answered %v", got)
	}
}

// The prompt is part of the cache key: an answer cached under one prompt
// is not served under another.
func TestSystemPromptIsPartOfTheCacheKey(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	body := `{"model":"oa/gpt-x","temperature":0,"messages":[{"role":"user","content":"hello"}]}`
	ask := func(want string) {
		t.Helper()
		r := e.Want(http.StatusOK, "POST", "/v1/chat/completions", body, admintest.Bearer(raw)...)
		if got := r.Header.Get("X-OmniRoute-Cache"); got != want {
			t.Fatalf("X-OmniRoute-Cache %q, want %q", got, want)
		}
	}
	ask("MISS")
	ask("HIT")
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "first prompt"})
	ask("MISS")
	if !strings.Contains(u.last(t), "first prompt") {
		t.Fatalf("the upstream received %s", u.last(t))
	}
	ask("HIT")
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"prompt": "second prompt"})
	n := u.calls()
	ask("MISS")
	if u.calls() != n+1 || !strings.Contains(u.last(t), "second prompt") {
		t.Fatalf("the upstream received %s", u.last(t))
	}
}

// thinking returns the budget the last Anthropic or Gemini request
// carried (0 when none).
func thinking(t *testing.T, body string) int {
	t.Helper()
	var v struct {
		Thinking *struct {
			BudgetTokens int `json:"budget_tokens"`
		} `json:"thinking"`
		GenerationConfig *struct {
			ThinkingConfig *struct {
				ThinkingBudget int `json:"thinkingBudget"`
			} `json:"thinkingConfig"`
		} `json:"generationConfig"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("upstream body %s: %v", body, err)
	}
	switch {
	case v.Thinking != nil:
		return v.Thinking.BudgetTokens
	case v.GenerationConfig != nil && v.GenerationConfig.ThinkingConfig != nil:
		return v.GenerationConfig.ThinkingConfig.ThinkingBudget
	}
	return 0
}

// The effort mapping decides the budget an Anthropic or Gemini upstream
// receives for reasoning_effort; the modes give the default budget to
// requests without one (default) or to every reasoning request (force).
func TestThinkingBudget(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	effort := func(model, level string) string {
		return fmt.Sprintf(`{"model":%q,"reasoning_effort":%q,"max_tokens":100,"messages":[{"role":"user","content":"hello"}]}`, model, level)
	}
	// Ollama's think:true asks for reasoning naming no budget or effort.
	think := func(model string) string {
		return fmt.Sprintf(`{"model":%q,"think":true,"stream":false,"messages":[{"role":"user","content":"hello"}]}`, model)
	}
	check := func(what, path, body string, want int) {
		t.Helper()
		e.Want(http.StatusOK, "POST", path, body, admintest.Bearer(raw)...)
		if got := thinking(t, u.last(t)); got != want {
			t.Fatalf("%s: the upstream's budget is %d, want %d (body %s)", what, got, want, u.last(t))
		}
	}
	// The built-in mapping.
	got := e.Want(http.StatusOK, "GET", "/api/settings/thinking-budget", nil).Object(t)
	if got["mode"] != "passthrough" || fmt.Sprint(got["efforts"]) != "map[high:16384 low:1024 medium:4096 minimal:1024]" {
		t.Fatalf("GET answered %v", got)
	}
	check("anthropic high, built in", "/v1/chat/completions", effort("an/claude-x", "high"), 16384)
	check("gemini high, built in", "/v1/chat/completions", effort("gm/gemini-x", "high"), 16384)
	check("anthropic, no budget, passthrough", "/api/chat", think("an/claude-x"), 4096)

	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"high": 30000, "low": 2000}})
	check("anthropic high, configured", "/v1/chat/completions", effort("an/claude-x", "high"), 30000)
	check("gemini high, configured", "/v1/chat/completions", effort("gm/gemini-x", "high"), 30000)
	check("gemini low, configured", "/v1/chat/completions", effort("gm/gemini-x", "low"), 2000)
	check("anthropic medium, unchanged", "/v1/chat/completions", effort("an/claude-x", "medium"), 4096)

	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"mode": "default", "default_budget": 5000})
	check("anthropic, no budget, default", "/api/chat", think("an/claude-x"), 5000)
	check("gemini, no budget, default", "/api/chat", think("gm/gemini-x"), 5000)
	check("anthropic high, default", "/v1/chat/completions", effort("an/claude-x", "high"), 30000)

	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"mode": "force", "default_budget": 7000})
	check("anthropic high, force", "/v1/chat/completions", effort("an/claude-x", "high"), 7000)
	check("gemini low, force", "/v1/chat/completions", effort("gm/gemini-x", "low"), 7000)
	check("anthropic client budget, force", "/v1/messages",
		`{"model":"an/claude-x","max_tokens":100,"thinking":{"type":"enabled","budget_tokens":2048},"messages":[{"role":"user","content":"hello"}]}`, 7000)
	// Force gives a budget to requests that ask for reasoning only.
	check("no reasoning, force", "/v1/chat/completions", `{"model":"an/claude-x","messages":[{"role":"user","content":"hello"}]}`, 0)

	got = e.Want(http.StatusOK, "GET", "/api/settings/thinking-budget", nil).Object(t)
	if got["mode"] != "force" || got["default_budget"] != float64(7000) || fmt.Sprint(got["efforts"]) != "map[high:30000 low:2000 medium:4096 minimal:1024]" {
		t.Fatalf("GET answered %v", got)
	}
}

// Settings that make no sense are refused with a 400 naming the field,
// and nothing changes.
func TestBadSettingsAreRefused(t *testing.T) {
	e, _ := gateway(t)
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "keep me", "exclude_keys": []string{"key_a"}})
	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"mode": "default", "default_budget": 3000})
	before := func() (string, string) {
		return string(e.Want(http.StatusOK, "GET", "/api/settings/system-prompt", nil).Body),
			string(e.Want(http.StatusOK, "GET", "/api/settings/thinking-budget", nil).Body)
	}
	sp, tb := before()

	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf("key_%d", i)
	}
	for _, c := range []struct {
		path string
		body any
		want string
	}{
		{"/api/settings/system-prompt", map[string]any{"mode": "middle"}, "mode"},
		{"/api/settings/system-prompt", map[string]any{"prompt": strings.Repeat("x", 32<<10+1)}, "prompt"},
		{"/api/settings/system-prompt", map[string]any{"prompt": "  "}, "prompt"},
		{"/api/settings/system-prompt", map[string]any{"exclude_keys": many}, "exclude_keys"},
		{"/api/settings/system-prompt", map[string]any{"exclude_keys": []string{""}}, "exclude_keys"},
		{"/api/settings/system-prompt", map[string]any{"exclude_keys": []string{"key a"}}, "exclude_keys"},
		{"/api/settings/system-prompt", map[string]any{"enabled": "yes"}, "enabled"},
		{"/api/settings/system-prompt", map[string]any{"promt": "typo"}, "promt"},
		{"/api/settings/system-prompt", `["not an object"]`, "object"},
		{"/api/settings/system-prompt", `{"enabled":false} {}`, "trailing"},
		{"/api/settings/thinking-budget", map[string]any{"mode": "auto"}, "mode"},
		{"/api/settings/thinking-budget", map[string]any{"default_budget": 0}, "default_budget"},
		{"/api/settings/thinking-budget", map[string]any{"default_budget": 131073}, "default_budget"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"high": 200000}}, "efforts.high"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"minimal": -1}}, "efforts.minimal"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"medium": 20000}}, "medium"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"low": 4096}}, "low"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"minimal": 2000}}, "minimal"},
		{"/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"xhigh": 40000}}, "xhigh"},
		{"/api/settings/thinking-budget", `{"mode":`, "JSON"},
	} {
		msg := e.WantError(http.StatusBadRequest, "PUT", c.path, c.body)
		if !strings.Contains(msg, c.want) {
			t.Errorf("PUT %s %.80v: message %q does not name %q", c.path, c.body, msg, c.want)
		}
	}
	// Bodies beyond the cap are refused before they are read whole.
	e.WantError(http.StatusRequestEntityTooLarge, "PUT", "/api/settings/system-prompt", `{"prompt":"`+strings.Repeat("x", 600<<10)+`"}`)
	if sp2, tb2 := before(); sp2 != sp || tb2 != tb {
		t.Fatalf("refused settings changed something:\n%s\n%s\nwas\n%s\n%s", sp2, tb2, sp, tb)
	}
}

// A change made through one replica applies on another sharing its
// database within a second.
func TestReplicasFollowWithinASecond(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	other, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.DB, MasterKey: admintest.MasterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = other.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(httpx.Wrap(other.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)

	chat := func(what string) string {
		t.Helper()
		r := routetest.Send(t, http.DefaultClient, "POST", srv.URL+"/v1/chat/completions",
			`{"model":"oa/gpt-x","messages":[{"role":"user","content":"hello"}]}`, admintest.Bearer(raw)...)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", what, r.Status, r.Body)
		}
		return u.last(t)
	}
	if body := chat("before"); strings.Contains(body, "from the other replica") {
		t.Fatalf("the upstream received %s", body)
	}
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "from the other replica"})
	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"high": 20000}})
	start := time.Now()
	testenv.Eventually(t, "the other replica injects the prompt", func() bool {
		return strings.Contains(chat("after"), "from the other replica")
	})
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("the other replica took %v to follow", took)
	}
	testenv.Eventually(t, "the other replica maps high to 20000", func() bool {
		r := routetest.Send(t, http.DefaultClient, "POST", srv.URL+"/v1/chat/completions",
			`{"model":"an/claude-x","reasoning_effort":"high","messages":[{"role":"user","content":"hello"}]}`, admintest.Bearer(raw)...)
		return r.Status == http.StatusOK && thinking(t, u.last(t)) == 20000
	})
}

// Who may not read or change the settings: an anonymous client, the
// holder of a gateway key (management routes take the dashboard
// session), and a web page in the operator's browser (cross-site, or a
// simple request whose body type needs no preflight).
func TestOnlyTheOperatorManagesTheSettings(t *testing.T) {
	e, _ := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	anon := &http.Client{}
	for _, path := range []string{"/api/settings/system-prompt", "/api/settings/thinking-budget"} {
		for _, hdr := range [][]string{nil, admintest.Bearer(raw)} {
			for _, m := range []string{"GET", "PUT"} {
				r := routetest.Send(t, anon, m, e.Srv.URL+path, `{"mode":"force"}`, hdr...)
				want := http.StatusUnauthorized
				if hdr != nil {
					want = http.StatusForbidden // a key without the manage scope
				}
				if r.Status != want {
					t.Errorf("%s %s without a session (%v): status %d, want %d", m, path, hdr, r.Status, want)
				}
			}
		}
		for _, hdr := range [][]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
			e.WantError(http.StatusForbidden, "PUT", path, `{"mode":"append"}`, hdr...)
			e.WantError(http.StatusForbidden, "GET", path, nil, hdr...)
		}
		e.WantError(http.StatusUnsupportedMediaType, "PUT", path, `{"mode":"append"}`, "Content-Type", "text/plain")
	}
	if got := e.Want(http.StatusOK, "GET", "/api/settings/system-prompt", nil).Object(t); got["enabled"] != false || got["mode"] != "prepend" {
		t.Fatalf("the system prompt changed: %v", got)
	}
	if got := e.Want(http.StatusOK, "GET", "/api/settings/thinking-budget", nil).Object(t); got["mode"] != "passthrough" {
		t.Fatalf("the thinking budget changed: %v", got)
	}
}

// A Responses conversation continued with previous_response_id carries
// the global prompt once: the stored turn keeps the client's own system
// prompt only.
func TestSystemPromptInAStoredConversation(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "GLOBAL-RULES"})
	first := e.Want(http.StatusOK, "POST", "/v1/responses", `{"model":"oa/gpt-x","instructions":"client-sys","input":"hello"}`,
		admintest.Bearer(raw)...).Object(t)
	e.Want(http.StatusOK, "POST", "/v1/responses", fmt.Sprintf(`{"model":"oa/gpt-x","previous_response_id":%q,"input":"again"}`, first["id"]),
		admintest.Bearer(raw)...)
	if body := u.last(t); strings.Count(body, "GLOBAL-RULES") != 1 || !strings.Contains(body, "again") {
		t.Fatalf("the second turn's upstream request is %s", body)
	}
}
