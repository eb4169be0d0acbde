package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

const gatewayKey = "omni-gateway-key-never-upstream"

// upstream is a fake provider that answers from recorded fixtures and
// remembers what it was sent.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []map[string]any
	keys   []string
	reply  func(w http.ResponseWriter, body map[string]any, n int)
}

func newUpstream(t *testing.T, reply func(w http.ResponseWriter, body map[string]any, n int)) *upstream {
	u := &upstream{reply: reply}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		u.mu.Lock()
		u.bodies = append(u.bodies, body)
		u.keys = append(u.keys, r.Header.Get("x-api-key")+"|"+r.Header.Get("Authorization"))
		n := len(u.bodies)
		u.mu.Unlock()
		u.reply(w, body, n)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) calls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

func fixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile("../formats/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func replyFixture(t *testing.T, jsonPath, ssePath string) func(http.ResponseWriter, map[string]any, int) {
	js, sse := fixture(t, jsonPath), fixture(t, ssePath)
	return func(w http.ResponseWriter, body map[string]any, _ int) {
		if body["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(sse)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(js)
	}
}

func replyStatus(status int, body string) func(http.ResponseWriter, map[string]any, int) {
	return func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// gateway starts the gateway over providers declared as in the config file.
func gateway(t *testing.T, route config.RouteConfig) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	route.APIKeys = []config.Secret{gatewayKey}
	route.RequireAPIKey = true
	cfg.Route = route
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.API, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv
}

func anthropicClient(gw *httptest.Server) asdk.Client {
	return asdk.NewClient(option.WithBaseURL(gw.URL+"/"), option.WithAPIKey(gatewayKey), option.WithMaxRetries(0))
}

var weatherTool = asdk.ToolUnionParam{OfTool: &asdk.ToolParam{
	Name:        "get_weather",
	Description: asdk.String("Current weather for a location"),
	InputSchema: asdk.ToolInputSchemaParam{Properties: map[string]any{"location": map[string]any{"type": "string"}, "unit": map[string]any{"type": "string"}}, Required: []string{"location"}},
}}

func TestAnthropicSDKToolRoundTrip(t *testing.T) {
	up := newUpstream(t, nil)
	final := fixture(t, "anthropic/testdata/responses/text.json")
	tools := fixture(t, "anthropic/testdata/responses/parallel_tools.json")
	up.reply = func(w http.ResponseWriter, body map[string]any, n int) {
		w.Header().Set("Content-Type", "application/json")
		if n == 1 {
			w.Write(tools)
			return
		}
		w.Write(final)
	}
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "claude", Type: "anthropic", BaseURL: up.URL, APIKeys: []config.Secret{"sk-ant-provider"}}}})
	c := anthropicClient(gw)
	ctx := context.Background()
	params := asdk.MessageNewParams{
		Model:     "claude/claude-sonnet-4-5",
		MaxTokens: 1024,
		System:    []asdk.TextBlockParam{{Text: "You are a weather bot."}},
		Messages:  []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("Weather in Paris and Oslo?"))},
		Tools:     []asdk.ToolUnionParam{weatherTool},
	}
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	var uses []asdk.ToolUseBlock
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			uses = append(uses, b.AsToolUse())
		}
	}
	if msg.StopReason != "tool_use" || len(uses) != 2 || uses[0].ID != "toolu_01A09q90qw90lq917835lq9" || !strings.Contains(string(uses[1].Input), "Oslo") {
		t.Fatalf("tool calls lost: %+v", msg)
	}
	if msg.Usage.CacheReadInputTokens != 2156 || msg.Usage.InputTokens != 472 {
		t.Fatalf("usage not passed through: %+v", msg.Usage)
	}
	// Send both results back in one user turn.
	params.Messages = append(params.Messages, msg.ToParam(), asdk.NewUserMessage(
		asdk.NewToolResultBlock(uses[0].ID, "18°C, clear", false),
		asdk.NewToolResultBlock(uses[1].ID, "4°C, snow", false)))
	msg, err = c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) == 0 || msg.Content[0].Text == "" {
		t.Fatalf("final answer: %+v", msg)
	}
	// What reached the upstream: its own key only, the system prompt, and
	// both tool results in one user message, ids intact.
	for _, k := range up.keys {
		if k != "sk-ant-provider|" {
			t.Fatalf("upstream saw credentials %q; want only the provider key", k)
		}
	}
	second := up.bodies[1]
	if up.bodies[0]["system"] == nil {
		t.Fatalf("system prompt dropped: %v", up.bodies[0])
	}
	msgs := second["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	blocks := last["content"].([]any)
	if last["role"] != "user" || len(blocks) != 2 || blocks[0].(map[string]any)["tool_use_id"] != uses[0].ID || blocks[1].(map[string]any)["tool_use_id"] != uses[1].ID {
		t.Fatalf("tool results not sent as one user turn in order: %v", last)
	}
}

func TestAnthropicSDKStreaming(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "claude", Type: "anthropic", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	c := anthropicClient(gw)
	stream := c.Messages.NewStreaming(context.Background(), asdk.MessageNewParams{
		Model: "claude/claude-sonnet-4-5", MaxTokens: 512, Tools: []asdk.ToolUnionParam{weatherTool},
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("Weather in Paris and Oslo?"))},
	})
	var msg asdk.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			n++
			var in map[string]any
			if err := json.Unmarshal(b.Input, &in); err != nil || in["location"] == nil {
				t.Fatalf("streamed tool input corrupted: %s", b.Input)
			}
		}
	}
	if n != 2 || msg.StopReason != "tool_use" || msg.Usage.OutputTokens == 0 {
		t.Fatalf("streamed message: %d tool uses, stop %q, usage %+v", n, msg.StopReason, msg.Usage)
	}
}

func TestGatewayFallbackAndErrors(t *testing.T) {
	good := newUpstream(t, replyFixture(t, "anthropic/testdata/responses/text.json", "anthropic/testdata/streams/text.sse"))
	earlyError := func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
	}
	for _, c := range []struct {
		name      string
		reply     func(http.ResponseWriter, map[string]any, int)
		fallsBack bool // the second target answers and the client sees no error
	}{
		{"500", replyStatus(500, `{"type":"error","error":{"type":"api_error","message":"boom"}}`), true},
		{"429", replyStatus(429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`), true},
		{"overloaded before any byte", earlyError, true},
		// Text already reached the client: surfaced, not retried.
		{"overloaded mid-stream", replyFixture(t, "anthropic/testdata/responses/text.json", "anthropic/testdata/streams/overloaded.sse"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			first := newUpstream(t, c.reply)
			before := good.calls()
			gw := gateway(t, config.RouteConfig{
				Providers: []config.RouteProvider{
					{ID: "first", Type: "anthropic", BaseURL: first.URL, APIKeys: []config.Secret{"k1"}},
					{ID: "second", Type: "anthropic", BaseURL: good.URL, APIKeys: []config.Secret{"k2"}},
				},
				Combos: []config.RouteCombo{{Name: "team", Strategy: "priority", Targets: []string{"first/m", "second/m"}}},
			})
			cl := anthropicClient(gw)
			stream := cl.Messages.NewStreaming(context.Background(), asdk.MessageNewParams{Model: "team", MaxTokens: 64,
				Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}})
			var msg asdk.Message
			for stream.Next() {
				msg.Accumulate(stream.Current())
			}
			err := stream.Err()
			if first.calls() != 1 {
				t.Fatalf("first target called %d times", first.calls())
			}
			second := good.calls() - before
			if c.fallsBack {
				if err != nil || second != 1 || len(msg.Content) == 0 || msg.Content[0].Text == "" {
					t.Fatalf("want a silent fallback: err %v, second called %d, message %+v", err, second, msg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "verloaded") || second != 0 {
				t.Fatalf("want the mid-stream failure surfaced and not retried: err %v, second called %d", err, second)
			}
		})
	}

	// Unknown model and a missing gateway key are errors in Anthropic's shape.
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: "anthropic", BaseURL: good.URL}}})
	ac := anthropicClient(gw)
	_, err := ac.Messages.New(context.Background(), asdk.MessageNewParams{Model: "nope", MaxTokens: 8,
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}})
	var apiErr *asdk.Error
	if !asErr(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("unknown model: %v", err)
	}
	noKey := asdk.NewClient(option.WithBaseURL(gw.URL+"/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	_, err = noKey.Messages.New(context.Background(), asdk.MessageNewParams{Model: "p/m", MaxTokens: 8,
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}})
	if !asErr(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Fatalf("wrong gateway key: %v", err)
	}
}
