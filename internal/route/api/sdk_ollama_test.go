package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	oapi "github.com/ollama/ollama/api"

	"github.com/omniedge/omni/internal/platform/config"
)

// bearer adds the gateway key: the Ollama client sends none of its own.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func ollamaClient(t *testing.T, gw, key string) *oapi.Client {
	t.Helper()
	u, err := url.Parse(gw)
	if err != nil {
		t.Fatal(err)
	}
	return oapi.NewClient(u, &http.Client{Transport: bearer(key)})
}

// replyNDJSON answers like an Ollama server: one object, or NDJSON when
// the request streams.
func replyNDJSON(t *testing.T, jsonPath, ndjsonPath string) func(http.ResponseWriter, map[string]any, int) {
	js, nd := fixture(t, jsonPath), fixture(t, ndjsonPath)
	return func(w http.ResponseWriter, body map[string]any, _ int) {
		if body["stream"] == true {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write(nd)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(js)
	}
}

// ollamaUpstream is one provider type with its recorded tool-call and
// final answers, and the usage the Ollama client must see for each.
type ollamaUpstream struct {
	typ                   string
	tools, final          func(t *testing.T) func(http.ResponseWriter, map[string]any, int)
	key                   string // what the upstream must see, as "x-api-key|Authorization"
	toolIDs               [2]string
	toolUsage, finalUsage [2]int // prompt_eval_count, eval_count
}

var ollamaUpstreams = []ollamaUpstream{
	{
		typ: "ollama",
		tools: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyNDJSON(t, "ollama/testdata/responses/parallel_tools.json", "ollama/testdata/streams/parallel_tools.ndjson")
		},
		final: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyNDJSON(t, "ollama/testdata/responses/text.json", "ollama/testdata/streams/text.ndjson")
		},
		key: "|Bearer sk-up", toolIDs: [2]string{"call_x7bq2m4k", "call_p0w9s3ne"}, toolUsage: [2]int{169, 48}, finalUsage: [2]int{212, 17},
	},
	{
		typ: "openai",
		tools: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyFixture(t, "openai/testdata/parallel_tools.json", "openai/testdata/parallel_tools.sse")
		},
		final: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse")
		},
		// OpenAI's prompt_tokens already include cached tokens.
		key: "|Bearer sk-up", toolIDs: [2]string{"call_Qm3vT8bN1xY5kR2pL7sW9dF0", "call_Zh6uJ4cK8eA2gV1nM5tB3yP7"}, toolUsage: [2]int{2048, 61}, finalUsage: [2]int{2190, 17},
	},
	{
		typ: "anthropic",
		tools: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyFixture(t, "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse")
		},
		final: func(t *testing.T) func(http.ResponseWriter, map[string]any, int) {
			return replyFixture(t, "anthropic/testdata/responses/text.json", "anthropic/testdata/streams/text.sse")
		},
		// Anthropic: input 472 + cache write 248 + cache read 2156.
		key: "sk-up|", toolIDs: [2]string{"toolu_01A09q90qw90lq917835lq9", "toolu_01B7dMu2LvDqXhGUf7xv4TnZ"}, toolUsage: [2]int{472 + 248 + 2156, 139}, finalUsage: [2]int{12, 12},
	},
}

func ollamaWeatherTool(t *testing.T) oapi.Tool {
	var tool oapi.Tool
	err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","description":"Current weather for a location",
		"parameters":{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string"}},"required":["location"]}}}`), &tool)
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

func ollamaWeatherRequest(t *testing.T) *oapi.ChatRequest {
	return &oapi.ChatRequest{
		Model: "up/model",
		Messages: []oapi.Message{
			{Role: "system", Content: "You are a weather bot."},
			{Role: "user", Content: "Weather in Paris and Oslo?"},
		},
		Tools: oapi.Tools{ollamaWeatherTool(t)},
	}
}

// systemSeen reports whether the system prompt reached the upstream in its
// own format.
func systemSeen(typ string, body map[string]any) bool {
	if typ == "anthropic" {
		b, _ := json.Marshal(body["system"])
		return strings.Contains(string(b), "weather bot")
	}
	msgs, _ := body["messages"].([]any)
	if len(msgs) == 0 {
		return false
	}
	first, _ := msgs[0].(map[string]any)
	c, _ := first["content"].(string)
	return first["role"] == "system" && strings.Contains(c, "weather bot")
}

// Ollama client streaming (the default) against each provider type:
// parallel tool calls arrive whole, the last line is done with the usage.
func TestOllamaSDKStreaming(t *testing.T) {
	for _, up := range ollamaUpstreams {
		t.Run(up.typ, func(t *testing.T) {
			u := newUpstream(t, up.tools(t))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: up.typ, BaseURL: u.URL, APIKeys: []config.Secret{"sk-up"}}}})
			c := ollamaClient(t, gw.URL, gatewayKey)
			var chunks []oapi.ChatResponse
			if err := c.Chat(context.Background(), ollamaWeatherRequest(t), func(r oapi.ChatResponse) error {
				chunks = append(chunks, r)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(chunks) < 2 {
				t.Fatalf("want a stream of several lines, got %d", len(chunks))
			}
			var calls []oapi.ToolCall
			for i, ch := range chunks {
				if ch.Done != (i == len(chunks)-1) {
					t.Fatalf("done on line %d of %d", i, len(chunks))
				}
				if ch.Model != "up/model" {
					t.Fatalf("model %q", ch.Model)
				}
				calls = append(calls, ch.Message.ToolCalls...)
			}
			last := chunks[len(chunks)-1]
			if len(calls) != 2 || calls[0].ID != up.toolIDs[0] || calls[1].ID != up.toolIDs[1] || calls[1].Function.Index != 1 {
				t.Fatalf("tool calls: %+v", calls)
			}
			for i, city := range []string{"Paris", "Oslo"} {
				loc, _ := calls[i].Function.Arguments.Get("location")
				if s, _ := loc.(string); calls[i].Function.Name != "get_weather" || !strings.Contains(s, city) {
					t.Fatalf("tool call %d corrupted: %s %s", i, calls[i].Function.Name, calls[i].Function.Arguments.String())
				}
			}
			if last.DoneReason != "stop" || last.PromptEvalCount != up.toolUsage[0] || last.EvalCount != up.toolUsage[1] || last.TotalDuration <= 0 {
				t.Fatalf("final line: %+v", last)
			}
			if u.bodies[0]["stream"] != true || !systemSeen(up.typ, u.bodies[0]) {
				t.Fatalf("upstream request: %v", u.bodies[0])
			}
			if u.keys[0] != up.key {
				t.Fatalf("upstream saw credentials %q; want only the provider key %q", u.keys[0], up.key)
			}
		})
	}
}

// Ollama client, stream false: tool calls → role tool results (one by
// tool_call_id, one by tool_name alone) → final answer, against each
// provider type.
func TestOllamaSDKToolRoundTrip(t *testing.T) {
	for _, up := range ollamaUpstreams {
		t.Run(up.typ, func(t *testing.T) {
			tools, final := up.tools(t), up.final(t)
			u := newUpstream(t, func(w http.ResponseWriter, body map[string]any, n int) {
				if n == 1 {
					tools(w, body, n)
					return
				}
				final(w, body, n)
			})
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: up.typ, BaseURL: u.URL, APIKeys: []config.Secret{"sk-up"}}}})
			c := ollamaClient(t, gw.URL, gatewayKey)
			off := false
			req := ollamaWeatherRequest(t)
			req.Stream = &off
			var resp oapi.ChatResponse
			n := 0
			chat := func() {
				t.Helper()
				n = 0
				if err := c.Chat(context.Background(), req, func(r oapi.ChatResponse) error {
					resp, n = r, n+1
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if n != 1 || !resp.Done {
					t.Fatalf("want one done object, got %d: %+v", n, resp)
				}
			}
			chat()
			calls := resp.Message.ToolCalls
			if len(calls) != 2 || calls[0].ID != up.toolIDs[0] || calls[1].ID != up.toolIDs[1] || resp.DoneReason != "stop" ||
				resp.PromptEvalCount != up.toolUsage[0] || resp.EvalCount != up.toolUsage[1] {
				t.Fatalf("tool-call answer: %+v", resp)
			}
			req.Messages = append(req.Messages, resp.Message,
				oapi.Message{Role: "tool", Content: "18°C, clear", ToolName: "get_weather", ToolCallID: calls[0].ID},
				oapi.Message{Role: "tool", Content: "4°C, snow", ToolName: "get_weather"})
			chat()
			if resp.Message.Content == "" || len(resp.Message.ToolCalls) != 0 || resp.PromptEvalCount != up.finalUsage[0] || resp.EvalCount != up.finalUsage[1] {
				t.Fatalf("final answer: %+v", resp)
			}
			// The results reached the upstream paired with the right calls.
			second := u.bodies[1]
			got := map[string]string{} // call id → result text
			for _, m := range second["messages"].([]any) {
				mm := m.(map[string]any)
				switch up.typ {
				case "anthropic":
					blocks, _ := mm["content"].([]any)
					for _, b := range blocks {
						if bb := b.(map[string]any); bb["type"] == "tool_result" {
							content, _ := json.Marshal(bb["content"])
							got[bb["tool_use_id"].(string)] = string(content)
						}
					}
				default:
					if mm["role"] == "tool" {
						got[mm["tool_call_id"].(string)], _ = mm["content"].(string)
						if up.typ == "ollama" && mm["tool_name"] != "get_weather" {
							t.Fatalf("tool_name lost: %v", mm)
						}
					}
				}
			}
			if len(got) != 2 || !strings.Contains(got[up.toolIDs[0]], "18°C") || !strings.Contains(got[up.toolIDs[1]], "4°C") {
				t.Fatalf("tool results upstream: %v", got)
			}
			if !systemSeen(up.typ, second) || second["stream"] == true {
				t.Fatalf("second upstream request: %v", second)
			}
			for _, k := range u.keys {
				if k != up.key {
					t.Fatalf("upstream saw credentials %q", k)
				}
			}
		})
	}
}

// GET /api/tags lists the gateway's models; /api/embed goes through the
// router to OpenAI- and Ollama-format providers; /api/version answers.
func TestOllamaSDKListEmbedVersion(t *testing.T) {
	oa := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, embeddingReply)
	})
	local := newUpstream(t, func(w http.ResponseWriter, body map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"nomic-embed-text","embeddings":[[0.5,0.25]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":3}`)
	})
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "oa", Type: "openai", BaseURL: oa.URL, APIKeys: []config.Secret{"sk-oa"}, Models: []string{"gpt-4o", "text-embedding-3-small"}},
			{ID: "local", Type: "ollama", BaseURL: local.URL, Models: []string{"qwen3:8b"}},
		},
		Aliases: map[string]string{"smart": "oa/gpt-4o"},
	})
	c := ollamaClient(t, gw.URL, gatewayKey)
	ctx := context.Background()
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Models {
		names = append(names, m.Name)
		if m.Model != m.Name || m.Digest == "" {
			t.Fatalf("entry %+v", m)
		}
	}
	if strings.Join(names, ",") != "local/qwen3:8b,oa/gpt-4o,oa/text-embedding-3-small,smart" {
		t.Fatalf("tags: %v", names)
	}
	e, err := c.Embed(ctx, &oapi.EmbedRequest{Model: "oa/text-embedding-3-small", Input: []string{"first", "second"}})
	if err != nil {
		t.Fatal(err)
	}
	// Vectors in input order (the upstream answered out of order).
	if len(e.Embeddings) != 2 || e.Embeddings[0][0] != 1.5 || e.Embeddings[1][2] != 0.125 || e.PromptEvalCount != 9 || e.Model != "oa/text-embedding-3-small" {
		t.Fatalf("embed via openai: %+v", e)
	}
	e, err = c.Embed(ctx, &oapi.EmbedRequest{Model: "local/nomic-embed-text", Input: "hello", Dimensions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Embeddings) != 1 || e.Embeddings[0][1] != 0.25 || e.PromptEvalCount != 3 {
		t.Fatalf("embed via ollama: %+v", e)
	}
	if b := local.bodies[0]; b["model"] != "nomic-embed-text" || b["dimensions"] != float64(2) || local.keys[0] != "|" {
		t.Fatalf("ollama upstream embed request %v, credentials %q", b, local.keys[0])
	}
	if oa.keys[0] != "|Bearer sk-oa" {
		t.Fatalf("openai upstream credentials %q", oa.keys[0])
	}
	v, err := c.Version(ctx)
	if err != nil || v == "" {
		t.Fatalf("version %q %v", v, err)
	}
}

// Errors reach the Ollama client in Ollama's shape, with the status; a
// failure after the first line arrives as an error line.
func TestOllamaSDKErrors(t *testing.T) {
	mid := newUpstream(t, replyNDJSON(t, "ollama/testdata/responses/text.json", "ollama/testdata/streams/error_midstream.ndjson"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "local", Type: "ollama", BaseURL: mid.URL}}})
	ctx := context.Background()
	c := ollamaClient(t, gw.URL, gatewayKey)
	msgs := []oapi.Message{{Role: "user", Content: "hi"}}
	var lines int
	err := c.Chat(ctx, &oapi.ChatRequest{Model: "local/qwen3:8b", Messages: msgs}, func(oapi.ChatResponse) error { lines++; return nil })
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") || lines != 2 || mid.calls() != 1 {
		t.Fatalf("mid-stream error: %v after %d lines (%d upstream calls)", err, lines, mid.calls())
	}
	var se oapi.StatusError
	err = c.Chat(ctx, &oapi.ChatRequest{Model: "nope", Messages: msgs}, func(oapi.ChatResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 404 || se.ErrorMessage == "" {
		t.Fatalf("unknown model: %#v", err)
	}
	err = c.Chat(ctx, &oapi.ChatRequest{Model: "local/qwen3:8b", Messages: []oapi.Message{{Role: "tool", Content: "orphan"}}}, func(oapi.ChatResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(se.ErrorMessage, "messages[0]") {
		t.Fatalf("bad request: %#v", err)
	}
	var ae oapi.AuthorizationError
	_, err = ollamaClient(t, gw.URL, "wrong").List(ctx)
	if !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("wrong gateway key: %#v", err)
	}
	// Raw: NDJSON content type at both paths, one JSON object per line.
	for _, path := range []string{"/api/chat", "/v1/api/chat"} {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+path, strings.NewReader(`{"model":"local/qwen3:8b","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%s: %d %q", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			if !json.Valid([]byte(l)) {
				t.Fatalf("%s: line %q", path, l)
			}
		}
	}
}

// generateSent checks what an upstream received for a generate request:
// the system prompt and the prompt as the one user message.
func generateSent(t *testing.T, typ string, body map[string]any, prompt string) {
	t.Helper()
	if !systemSeen(typ, body) {
		t.Fatalf("system prompt lost: %v", body)
	}
	b, _ := json.Marshal(body["messages"])
	if !strings.Contains(string(b), prompt) || strings.Count(string(b), `"role":"user"`) != 1 {
		t.Fatalf("prompt not sent as the one user message: %s", b)
	}
	for _, k := range []string{"prompt", "context", "template", "raw", "system"} {
		if _, ok := body[k]; ok && (typ != "anthropic" || k != "system") {
			t.Fatalf("generate field %q reached the upstream: %v", k, body)
		}
	}
}

// Ollama client Generate, streamed and not, against each provider type:
// the prompt reaches the upstream as a user message, the answer comes
// back in response lines with the usage on the last one.
func TestOllamaSDKGenerate(t *testing.T) {
	for _, up := range ollamaUpstreams {
		t.Run(up.typ, func(t *testing.T) {
			u := newUpstream(t, up.final(t))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: up.typ, BaseURL: u.URL, APIKeys: []config.Secret{"sk-up"}}}})
			c := ollamaClient(t, gw.URL, gatewayKey)
			req := &oapi.GenerateRequest{Model: "up/model", Prompt: "Summarise the weather.", System: "You are a weather bot.",
				Template: "{{ .Prompt }}", Context: []int{1, 2, 3}, KeepAlive: &oapi.Duration{Duration: 5 * time.Minute},
				Options: map[string]any{"temperature": 0.5, "num_ctx": 4096}}
			var chunks []oapi.GenerateResponse
			if err := c.Generate(context.Background(), req, func(r oapi.GenerateResponse) error {
				chunks = append(chunks, r)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(chunks) < 2 {
				t.Fatalf("want a stream of several lines, got %d", len(chunks))
			}
			var text strings.Builder
			for i, ch := range chunks {
				if ch.Done != (i == len(chunks)-1) || ch.Model != "up/model" {
					t.Fatalf("line %d of %d: %+v", i, len(chunks), ch)
				}
				text.WriteString(ch.Response)
			}
			last := chunks[len(chunks)-1]
			if text.Len() == 0 || last.DoneReason != "stop" || last.PromptEvalCount != up.finalUsage[0] || last.EvalCount != up.finalUsage[1] || last.TotalDuration <= 0 {
				t.Fatalf("streamed answer %q, final line %+v", text.String(), last)
			}
			if u.bodies[0]["stream"] != true {
				t.Fatalf("upstream request: %v", u.bodies[0])
			}
			generateSent(t, up.typ, u.bodies[0], "Summarise the weather.")

			off := false
			req.Stream, req.Format = &off, json.RawMessage(`"json"`)
			n := 0
			var one oapi.GenerateResponse
			if err := c.Generate(context.Background(), req, func(r oapi.GenerateResponse) error {
				one, n = r, n+1
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n != 1 || !one.Done || one.Response == "" || one.Model != "up/model" || one.DoneReason != "stop" ||
				one.PromptEvalCount != up.finalUsage[0] || one.EvalCount != up.finalUsage[1] || len(one.Context) != 0 {
				t.Fatalf("answer (%d objects): %+v", n, one)
			}
			if u.bodies[1]["stream"] == true {
				t.Fatalf("upstream request: %v", u.bodies[1])
			}
			generateSent(t, up.typ, u.bodies[1], "Summarise the weather.")
			if up.typ == "ollama" {
				// Ollama upstreams get the options and keep_alive too.
				opts, _ := u.bodies[1]["options"].(map[string]any)
				if u.bodies[1]["format"] != "json" || opts["num_ctx"] != float64(4096) || u.bodies[1]["keep_alive"] == nil {
					t.Fatalf("ollama upstream request: %v", u.bodies[1])
				}
			}
		})
	}
}

// Show, ListRunning, the legacy Embeddings and a generate request that
// only loads a model, through the official client.
func TestOllamaSDKShowPSEmbeddings(t *testing.T) {
	local := newUpstream(t, func(w http.ResponseWriter, body map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"nomic-embed-text","embeddings":[[0.5,0.25]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":3}`)
	})
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "oa", Type: "openai", BaseURL: local.URL, APIKeys: []config.Secret{"sk-oa"}, Models: []string{"gpt-4o", "text-embedding-3-small"}},
			{ID: "local", Type: "ollama", BaseURL: local.URL, Models: []string{"qwen3:8b"}},
		},
		Aliases: map[string]string{"smart": "oa/gpt-4o"},
	})
	c := ollamaClient(t, gw.URL, gatewayKey)
	ctx := context.Background()

	s, err := c.Show(ctx, &oapi.ShowRequest{Model: "oa/gpt-4o"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Details.Family != "oa" || s.ModelInfo["general.architecture"] != "gateway" || len(s.Capabilities) != 2 ||
		s.Capabilities[0] != "completion" || s.Capabilities[1] != "tools" {
		t.Fatalf("show oa/gpt-4o: %+v", s)
	}
	// A name the table routes without listing it: its kind is guessed.
	// (Sent as name, the older spelling that clients still send.)
	//lint:ignore SA1019 the deprecated field is what this checks
	s, err = c.Show(ctx, &oapi.ShowRequest{Name: "local/nomic-embed-text"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Details.Family != "local" || len(s.Capabilities) != 1 || s.Capabilities[0] != "embedding" {
		t.Fatalf("show local/nomic-embed-text: %+v", s)
	}
	if _, err := c.Show(ctx, &oapi.ShowRequest{Model: "smart"}); err != nil {
		t.Fatal(err)
	}
	var se oapi.StatusError
	_, err = c.Show(ctx, &oapi.ShowRequest{Model: "nope"})
	if !errors.As(err, &se) || se.StatusCode != 404 || !strings.Contains(se.ErrorMessage, `"nope" not found`) {
		t.Fatalf("show nope: %#v", err)
	}

	ps, err := c.ListRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ps.Models {
		names = append(names, m.Name)
		if m.Model != m.Name || m.Digest == "" {
			t.Fatalf("ps entry %+v", m)
		}
	}
	if strings.Join(names, ",") != "local/qwen3:8b,oa/gpt-4o,oa/text-embedding-3-small,smart" {
		t.Fatalf("ps: %v", names)
	}

	e, err := c.Embeddings(ctx, &oapi.EmbeddingRequest{Model: "local/nomic-embed-text", Prompt: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Embedding) != 2 || e.Embedding[0] != 0.5 || e.Embedding[1] != 0.25 {
		t.Fatalf("embeddings: %+v", e)
	}
	if b := local.bodies[0]; b["model"] != "nomic-embed-text" || b["input"] == nil {
		t.Fatalf("upstream embed request %v", b)
	}
	// Nothing to embed or generate: answered without the upstream.
	calls := local.calls()
	if e, err = c.Embeddings(ctx, &oapi.EmbeddingRequest{Model: "local/nomic-embed-text"}); err != nil || e.Embedding == nil || len(e.Embedding) != 0 {
		t.Fatalf("empty prompt: %+v %v", e, err)
	}
	for keep, want := range map[time.Duration]string{5 * time.Minute: "load", 0: "unload"} {
		var got []oapi.GenerateResponse
		err := c.Generate(ctx, &oapi.GenerateRequest{Model: "oa/gpt-4o", KeepAlive: &oapi.Duration{Duration: keep}}, func(r oapi.GenerateResponse) error {
			got = append(got, r)
			return nil
		})
		if err != nil || len(got) != 1 || !got[0].Done || got[0].DoneReason != want {
			t.Fatalf("generate without a prompt (keep_alive %v): %+v %v", keep, got, err)
		}
	}
	if local.calls() != calls {
		t.Fatalf("the upstream was called for nothing (%d calls, want %d)", local.calls(), calls)
	}
	err = c.Generate(ctx, &oapi.GenerateRequest{Model: "nope"}, func(oapi.GenerateResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 404 {
		t.Fatalf("loading an unknown model: %#v", err)
	}
	_, err = c.Embeddings(ctx, &oapi.EmbeddingRequest{Model: "nope", Prompt: "x"})
	if !errors.As(err, &se) || se.StatusCode != 404 {
		t.Fatalf("embeddings of an unknown model: %#v", err)
	}
}

// The endpoints that manage models on an Ollama host answer 501 in
// Ollama's error shape, to the official client and raw requests alike;
// another method on an Ollama path is a 405, any other /api/ path a JSON
// 404; and nothing is served without a key.
func TestOllamaSDKUnsupportedEndpoints(t *testing.T) {
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "local", Type: "ollama", BaseURL: "http://127.0.0.1:1"}}})
	c := ollamaClient(t, gw.URL, gatewayKey)
	ctx := context.Background()
	off := false
	calls := map[string]func() error{
		"pull": func() error {
			return c.Pull(ctx, &oapi.PullRequest{Model: "llama3"}, func(oapi.ProgressResponse) error { return nil })
		},
		"push": func() error {
			return c.Push(ctx, &oapi.PushRequest{Model: "me/llama3"}, func(oapi.ProgressResponse) error { return nil })
		},
		"create": func() error {
			return c.Create(ctx, &oapi.CreateRequest{Model: "mine", Stream: &off}, func(oapi.ProgressResponse) error { return nil })
		},
		"copy":   func() error { return c.Copy(ctx, &oapi.CopyRequest{Source: "a", Destination: "b"}) },
		"delete": func() error { return c.Delete(ctx, &oapi.DeleteRequest{Model: "a"}) },
		"blobs":  func() error { return c.CreateBlob(ctx, "sha256:"+strings.Repeat("ab", 32), strings.NewReader("data")) },
	}
	for name, call := range calls {
		var se oapi.StatusError
		if err := call(); !errors.As(err, &se) || se.StatusCode != 501 || !strings.Contains(se.ErrorMessage, "the gateway does not") {
			t.Fatalf("%s: %#v", name, err)
		}
	}
	raw := func(method, path, key string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, gw.URL+path, strings.NewReader(`{"model":"x"}`))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var body map[string]any
		if method != http.MethodHead {
			if err := json.Unmarshal(b, &body); err != nil || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%s %s: %d %q %q", method, path, res.StatusCode, res.Header.Get("Content-Type"), b)
			}
			if _, ok := body["error"].(string); !ok {
				t.Fatalf("%s %s: not Ollama's error shape: %s", method, path, b)
			}
		}
		return res, body
	}
	for _, c := range []struct {
		method, path, key string
		status            int
		allow             string
	}{
		{"HEAD", "/api/blobs/sha256:abc", gatewayKey, 501, ""},
		{"POST", "/v1/api/pull", gatewayKey, 501, ""},
		{"POST", "/api/pull", "", 401, ""},
		{"DELETE", "/api/delete", "wrong", 401, ""},
		{"GET", "/api/generate", gatewayKey, 405, "POST"},
		{"GET", "/v1/api/show", gatewayKey, 405, "POST"},
		{"POST", "/api/tags", gatewayKey, 405, "GET, HEAD"},
		{"GET", "/api/blobs/sha256:abc", gatewayKey, 405, "HEAD, POST"},
		{"GET", "/api/nope", gatewayKey, 404, ""},
		{"POST", "/api/chat/extra", "", 404, ""},
		{"GET", "/v1/api/nope", "", 404, ""},
	} {
		res, _ := raw(c.method, c.path, c.key)
		if res.StatusCode != c.status || res.Header.Get("Allow") != c.allow {
			t.Fatalf("%s %s: %d (Allow %q), want %d (Allow %q)", c.method, c.path, res.StatusCode, res.Header.Get("Allow"), c.status, c.allow)
		}
	}
}
