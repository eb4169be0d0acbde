package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/omniedge/omni/internal/platform/config"
)

func openAIClient(gw string) openai.Client {
	return openai.NewClient(ooption.WithBaseURL(gw+"/v1/"), ooption.WithAPIKey(gatewayKey), ooption.WithMaxRetries(0))
}

var oaWeather = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("Current weather for a location"),
	Parameters:  shared.FunctionParameters{"type": "object", "properties": map[string]any{"location": map[string]any{"type": "string"}}, "required": []string{"location"}},
})

func weatherParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are a weather bot."),
			openai.SystemMessage("Answer in one sentence."),
			openai.UserMessage("Weather in Paris and Oslo?"),
		},
		Tools: []openai.ChatCompletionToolUnionParam{oaWeather},
	}
}

// OpenAI client → OpenAI upstream: parallel tool calls, the results sent
// back, cached-token usage, and only the provider's key upstream.
func TestOpenAISDKToolRoundTrip(t *testing.T) {
	tools, final := fixture(t, "openai/testdata/parallel_tools.json"), fixture(t, "openai/testdata/text.json")
	up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, n int) {
		w.Header().Set("Content-Type", "application/json")
		if n == 1 {
			w.Write(tools)
			return
		}
		w.Write(final)
	})
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
	c := openAIClient(gw.URL)
	ctx := context.Background()
	params := weatherParams("oa/gpt-4o")
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Choices[0].Message
	if resp.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 2 || msg.ToolCalls[0].ID != "call_Qm3vT8bN1xY5kR2pL7sW9dF0" ||
		!strings.Contains(msg.ToolCalls[1].Function.Arguments, "Oslo") {
		t.Fatalf("tool calls: %+v", resp.Choices[0])
	}
	if resp.Usage.PromptTokens != 2048 || resp.Usage.PromptTokensDetails.CachedTokens != 1536 || resp.Usage.CompletionTokens != 61 {
		t.Fatalf("usage: %+v", resp.Usage)
	}
	params.Messages = append(params.Messages, msg.ToParam(),
		openai.ToolMessage("18°C, clear", msg.ToolCalls[0].ID), openai.ToolMessage("4°C, snow", msg.ToolCalls[1].ID))
	resp, err = c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Choices[0].Message.Content, "Oslo") {
		t.Fatalf("final answer: %+v", resp.Choices[0].Message)
	}
	for _, k := range up.keys {
		if k != "|Bearer sk-provider" {
			t.Fatalf("upstream saw credentials %q", k)
		}
	}
	msgs := up.bodies[1]["messages"].([]any)
	sys := msgs[0].(map[string]any)
	if sys["role"] != "system" || !strings.Contains(sys["content"].(string), "weather bot") || !strings.Contains(sys["content"].(string), "one sentence") {
		t.Fatalf("system prompts not merged into the first message: %v", sys)
	}
	var toolMsgs []map[string]any
	for _, m := range msgs {
		if mm := m.(map[string]any); mm["role"] == "tool" {
			toolMsgs = append(toolMsgs, mm)
		}
	}
	if len(toolMsgs) != 2 || toolMsgs[0]["tool_call_id"] != msg.ToolCalls[0].ID || toolMsgs[1]["tool_call_id"] != msg.ToolCalls[1].ID {
		t.Fatalf("tool results upstream: %v", toolMsgs)
	}
}

// Streaming with fragmented parallel tool-call arguments and
// include_usage, through the SDK's accumulator.
func TestOpenAISDKStreaming(t *testing.T) {
	for _, up := range []struct{ name, typ, json, sse string }{
		{"openai upstream", "openai", "openai/testdata/parallel_tools.json", "openai/testdata/parallel_tools.sse"},
		{"anthropic upstream", "anthropic", "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse"},
	} {
		t.Run(up.name, func(t *testing.T) {
			u := newUpstream(t, replyFixture(t, up.json, up.sse))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: up.typ, BaseURL: u.URL, APIKeys: []config.Secret{"k"}}}})
			c := openAIClient(gw.URL)
			params := weatherParams("p/model")
			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := c.Chat.Completions.NewStreaming(context.Background(), params)
			acc := openai.ChatCompletionAccumulator{}
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			calls := acc.Choices[0].Message.ToolCalls
			if len(calls) != 2 || acc.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("streamed tool calls: %+v finish %q", calls, acc.Choices[0].FinishReason)
			}
			for _, tc := range calls {
				var args map[string]any
				if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || args["location"] == nil || tc.ID == "" || tc.Function.Name != "get_weather" {
					t.Fatalf("tool call corrupted in streaming translation: %+v", tc)
				}
			}
			if acc.Usage.PromptTokens == 0 || acc.Usage.CompletionTokens == 0 || acc.Usage.PromptTokensDetails.CachedTokens == 0 {
				t.Fatalf("usage with cached tokens missing from the stream: %+v", acc.Usage)
			}
			// Upstream usage is always requested from OpenAI-format upstreams.
			if up.typ == "openai" {
				so, _ := u.bodies[0]["stream_options"].(map[string]any)
				if so["include_usage"] != true {
					t.Fatalf("upstream request lacks stream_options.include_usage: %v", u.bodies[0])
				}
			}
		})
	}
}

// OpenAI client → Anthropic upstream (non-streaming): ids kept, the cache
// accounting flipped into OpenAI's inclusive prompt count.
func TestOpenAISDKToAnthropicUpstream(t *testing.T) {
	u := newUpstream(t, replyFixture(t, "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "claude", Type: "anthropic", BaseURL: u.URL, APIKeys: []config.Secret{"sk-ant"}}}})
	c := openAIClient(gw.URL)
	resp, err := c.Chat.Completions.New(context.Background(), weatherParams("claude/claude-sonnet-4-5"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "tool_calls" || len(resp.Choices[0].Message.ToolCalls) != 2 || resp.Choices[0].Message.ToolCalls[0].ID != "toolu_01A09q90qw90lq917835lq9" {
		t.Fatalf("translated response: %+v", resp.Choices[0])
	}
	// Anthropic: input 472 + cache write 248 + cache read 2156.
	if resp.Usage.PromptTokens != 472+248+2156 || resp.Usage.PromptTokensDetails.CachedTokens != 2156 {
		t.Fatalf("usage flip: %+v", resp.Usage)
	}
	body := u.bodies[0]
	if body["max_tokens"] == nil {
		t.Fatal("Anthropic's required max_tokens was not defaulted")
	}
	sys, _ := json.Marshal(body["system"])
	if !strings.Contains(string(sys), "weather bot") || !strings.Contains(string(sys), "one sentence") {
		t.Fatalf("both system prompts must reach Anthropic's system: %s", sys)
	}
	if u.keys[0] != "sk-ant|" {
		t.Fatalf("upstream credentials %q", u.keys[0])
	}
}

// Anthropic client → OpenAI upstream.
func TestAnthropicSDKToOpenAIUpstream(t *testing.T) {
	u := newUpstream(t, replyFixture(t, "openai/testdata/parallel_tools.json", "openai/testdata/parallel_tools.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: u.URL, APIKeys: []config.Secret{"sk-oa"}}}})
	c := anthropicClient(gw)
	msg, err := c.Messages.New(context.Background(), asdk.MessageNewParams{Model: "oa/gpt-4o", MaxTokens: 256, Tools: []asdk.ToolUnionParam{weatherTool},
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("Weather in Paris and Oslo?"))}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			n++
		}
	}
	if n != 2 || msg.StopReason != "tool_use" {
		t.Fatalf("translated message: %+v", msg)
	}
	// OpenAI 2048 prompt of which 1536 cached → Anthropic input 512 + cache read 1536.
	if msg.Usage.InputTokens != 512 || msg.Usage.CacheReadInputTokens != 1536 || msg.Usage.OutputTokens != 61 {
		t.Fatalf("usage flip: %+v", msg.Usage)
	}
	if u.bodies[0]["max_completion_tokens"] == nil {
		t.Fatalf("max_tokens not mapped to max_completion_tokens: %v", u.bodies[0])
	}
}

// An error inside an OpenAI 200 stream after content reached the client
// is surfaced to the client, not hidden.
func TestOpenAIMidStreamErrorSurfaced(t *testing.T) {
	u := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/error_midstream.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: u.URL, APIKeys: []config.Secret{"k"}}}})
	c := openAIClient(gw.URL)
	stream := c.Chat.Completions.NewStreaming(context.Background(), weatherParams("oa/gpt-4o"))
	for stream.Next() {
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "server had an error") {
		t.Fatalf("mid-stream error: %v", err)
	}
	if u.calls() != 1 {
		t.Fatalf("retried after the first byte: %d calls", u.calls())
	}
}

// Dedicated provider routes add the provider prefix when it is missing and
// refuse a model of another configured provider.
func TestDedicatedProviderRoute(t *testing.T) {
	oa := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	other := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{
		{ID: "nebius", Type: "openai-compatible", BaseURL: oa.URL, APIKeys: []config.Secret{"k"}},
		{ID: "groq", Type: "openai-compatible", BaseURL: other.URL, APIKeys: []config.Secret{"k2"}},
	}})
	c := openai.NewClient(ooption.WithBaseURL(gw.URL+"/v1/providers/nebius/"), ooption.WithAPIKey(gatewayKey), ooption.WithMaxRetries(0))
	for _, model := range []string{"Qwen/Qwen3-8B", "nebius/Qwen/Qwen3-8B"} {
		if _, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}); err != nil {
			t.Fatalf("%s: %v", model, err)
		}
	}
	if oa.calls() != 2 || oa.bodies[0]["model"] != "Qwen/Qwen3-8B" || oa.bodies[1]["model"] != "Qwen/Qwen3-8B" {
		t.Fatalf("upstream models: %v / %v (%d calls)", oa.bodies[0]["model"], oa.bodies[1]["model"], oa.calls())
	}
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "groq/llama-3.3-70b",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var apiErr *openai.Error
	if !asErr(err, &apiErr) || apiErr.StatusCode != 400 || other.calls() != 0 {
		t.Fatalf("mismatched provider: %v (other called %d)", err, other.calls())
	}
	missing := openai.NewClient(ooption.WithBaseURL(gw.URL+"/v1/providers/nope/"), ooption.WithAPIKey(gatewayKey), ooption.WithMaxRetries(0))
	_, err = missing.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "m",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if !asErr(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("unknown provider: %v", err)
	}
}

// X-Session-Id (and x_session_id) pin a session and are echoed back.
func TestSessionHeaderEchoed(t *testing.T) {
	u := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: u.URL, APIKeys: []config.Secret{"k"}}}})
	for _, h := range []string{"X-Session-Id", "x_session_id"} {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(`{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		req.Header[h] = []string{"sess-42"} // raw key: keep the underscore spelling as sent
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("X-OmniRoute-Session-Id") != "sess-42" {
			t.Fatalf("%s: status %d, echoed %q", h, res.StatusCode, res.Header.Get("X-OmniRoute-Session-Id"))
		}
	}
}
