package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	oapi "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	ofmt "github.com/omniedge/omni/internal/route/formats/openai"
	rfmt "github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/llm"
)

// The full matrix: every official SDK against a fake upstream of every
// provider type, streaming and not, each a two-turn tool loop. What the
// client must see is derived from the recorded fixture through the
// provider format's own decoder; what the upstream must receive on the
// second turn is checked through the same format's request decoder.

// matrixUpstream is a provider type with its recorded answers.
type matrixUpstream struct {
	typ, model             string
	toolsJSON, toolsStream string
	textJSON, textStream   string
	streamType             string
	decodeResponse         func([]byte) (*llm.Response, error)
	newDecoder             func(io.ReadCloser) llm.Stream
	decodeRequest          func([]byte) (*llm.Request, error)
}

var matrixUpstreams = []matrixUpstream{
	{typ: "openai", model: "gpt-4o", toolsJSON: "openai/testdata/parallel_tools.json", toolsStream: "openai/testdata/parallel_tools.sse",
		textJSON: "openai/testdata/text.json", textStream: "openai/testdata/text.sse", streamType: "text/event-stream",
		decodeResponse: ofmt.DecodeResponse, newDecoder: ofmt.NewStreamDecoder, decodeRequest: ofmt.DecodeRequest},
	{typ: "anthropic", model: "claude-sonnet-4-5", toolsJSON: "anthropic/testdata/responses/parallel_tools.json", toolsStream: "anthropic/testdata/streams/parallel_tools.sse",
		textJSON: "anthropic/testdata/responses/text.json", textStream: "anthropic/testdata/streams/text.sse", streamType: "text/event-stream",
		decodeResponse: anthropic.DecodeResponse, newDecoder: anthropic.NewStreamDecoder, decodeRequest: anthropic.DecodeRequest},
	{typ: "gemini", model: "gemini-2.5-flash", toolsJSON: "gemini/testdata/responses/parallel_tools.json", toolsStream: "gemini/testdata/streams/parallel_tools.sse",
		textJSON: "gemini/testdata/responses/text.json", textStream: "gemini/testdata/streams/text.sse", streamType: "text/event-stream",
		decodeResponse: gemini.DecodeResponse, newDecoder: gemini.NewStreamDecoder,
		decodeRequest: func(b []byte) (*llm.Request, error) { return gemini.DecodeRequest("m", b, false) }},
	{typ: "ollama", model: "qwen3:8b", toolsJSON: "ollama/testdata/responses/parallel_tools.json", toolsStream: "ollama/testdata/streams/parallel_tools.ndjson",
		textJSON: "ollama/testdata/responses/text.json", textStream: "ollama/testdata/streams/text.ndjson", streamType: "application/x-ndjson",
		decodeResponse: ollama.DecodeResponse, newDecoder: ollama.NewStreamDecoder, decodeRequest: ollama.DecodeRequest},
	{typ: "openai-responses", model: "gpt-4.1", toolsJSON: "responses/testdata/parallel_tools.json", toolsStream: "responses/testdata/parallel_tools.sse",
		textJSON: "responses/testdata/text.json", textStream: "responses/testdata/text.sse", streamType: "text/event-stream",
		decodeResponse: rfmt.DecodeResponse, newDecoder: rfmt.NewStreamDecoder,
		decodeRequest: func(b []byte) (*llm.Request, error) {
			in, err := rfmt.DecodeRequest(b)
			if err != nil {
				return nil, err
			}
			return in.Request, nil
		}},
}

// expect is what the client must see: the fixture read by the provider
// format's own decoder.
func (u matrixUpstream) expect(t *testing.T, stream bool) (calls []llm.ToolCall, text string) {
	t.Helper()
	read := func(jsonPath, streamPath string) *llm.Response {
		if !stream {
			r, err := u.decodeResponse(fixture(t, jsonPath))
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		r, err := llm.Collect(u.newDecoder(io.NopCloser(bytes.NewReader(fixture(t, streamPath)))))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return read(u.toolsJSON, u.toolsStream).ToolCalls(), read(u.textJSON, u.textStream).Text()
}

// recordingUpstream serves the tool-call fixture first and the text
// fixture after, as a stream when asked, and records every request.
type recordingUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
}

func newRecordingUpstream(t *testing.T, u matrixUpstream) *recordingUpstream {
	rec := &recordingUpstream{}
	files := map[bool][2][]byte{
		false: {fixture(t, u.toolsJSON), fixture(t, u.textJSON)},
		true:  {fixture(t, u.toolsStream), fixture(t, u.textStream)},
	}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, body)
		rec.headers = append(rec.headers, r.Header.Clone())
		n := len(rec.bodies)
		rec.mu.Unlock()
		var probe struct {
			Stream *bool `json:"stream"`
		}
		_ = json.Unmarshal(body, &probe)
		stream := strings.Contains(r.URL.Path, ":streamGenerateContent") || probe.Stream != nil && *probe.Stream
		ct := "application/json"
		if stream {
			ct = u.streamType
		}
		w.Header().Set("Content-Type", ct)
		w.Write(files[stream][min(n, 2)-1])
	}))
	t.Cleanup(rec.Close)
	return rec
}

// sdkRun is what a client saw over the two turns.
type sdkRun struct {
	calls []llm.ToolCall
	text  string
}

type sdkDriver func(t *testing.T, gw, model string, stream bool) sdkRun

func resultText(i int) string { return fmt.Sprintf("result-%d", i) }

func driveOpenAIChat(t *testing.T, gw, model string, stream bool) sdkRun {
	c, ctx := openAIClient(gw), context.Background()
	params := weatherParams(model)
	turn := func() openai.ChatCompletionMessage {
		t.Helper()
		if !stream {
			resp, err := c.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Choices[0].Message
		}
		s := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return acc.Choices[0].Message
	}
	msg := turn()
	var run sdkRun
	params.Messages = append(params.Messages, msg.ToParam())
	for i, tc := range msg.ToolCalls {
		run.calls = append(run.calls, llm.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: json.RawMessage(tc.Function.Arguments)})
		params.Messages = append(params.Messages, openai.ToolMessage(resultText(i), tc.ID))
	}
	run.text = turn().Content
	return run
}

func driveAnthropic(t *testing.T, gw, model string, stream bool) sdkRun {
	c := asdk.NewClient(option.WithBaseURL(gw+"/"), option.WithAPIKey(gatewayKey), option.WithMaxRetries(0))
	ctx := context.Background()
	params := asdk.MessageNewParams{Model: asdk.Model(model), MaxTokens: 1024,
		System:   []asdk.TextBlockParam{{Text: "You are a weather bot."}},
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("Weather in Paris and Oslo?"))},
		Tools:    []asdk.ToolUnionParam{weatherTool}}
	turn := func() asdk.Message {
		t.Helper()
		if !stream {
			msg, err := c.Messages.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			return *msg
		}
		s := c.Messages.NewStreaming(ctx, params)
		var msg asdk.Message
		for s.Next() {
			if err := msg.Accumulate(s.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return msg
	}
	msg := turn()
	var run sdkRun
	var results []asdk.ContentBlockParamUnion
	for _, b := range msg.Content {
		if b.Type == "tool_use" {
			run.calls = append(run.calls, llm.ToolCall{ID: b.ID, Name: b.Name, Arguments: b.Input})
			results = append(results, asdk.NewToolResultBlock(b.ID, resultText(len(results)), false))
		}
	}
	params.Messages = append(params.Messages, msg.ToParam(), asdk.NewUserMessage(results...))
	for _, b := range turn().Content {
		if b.Type == "text" {
			run.text += b.Text
		}
	}
	return run
}

func driveGenai(t *testing.T, gw, model string, stream bool) sdkRun {
	c, ctx := geminiClient(t, gw, "v1beta"), context.Background()
	history := append([]*genai.Content(nil), weatherQuestion...)
	turn := func() *genai.Content {
		t.Helper()
		if !stream {
			resp, err := c.Models.GenerateContent(ctx, model, history, weatherConfig())
			if err != nil {
				t.Fatal(err)
			}
			return resp.Candidates[0].Content
		}
		out := &genai.Content{Role: genai.RoleModel}
		for resp, err := range c.Models.GenerateContentStream(ctx, model, history, weatherConfig()) {
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Candidates) > 0 && resp.Candidates[0].Content != nil {
				out.Parts = append(out.Parts, resp.Candidates[0].Content.Parts...)
			}
		}
		return out
	}
	content := turn()
	var run sdkRun
	var results []*genai.Part
	for _, p := range content.Parts {
		if fc := p.FunctionCall; fc != nil {
			args, _ := json.Marshal(fc.Args)
			run.calls = append(run.calls, llm.ToolCall{ID: fc.ID, Name: fc.Name, Arguments: args})
			r := genai.NewPartFromFunctionResponse(fc.Name, map[string]any{"result": resultText(len(results))})
			r.FunctionResponse.ID = fc.ID
			results = append(results, r)
		}
	}
	history = append(history, content, genai.NewContentFromParts(results, genai.RoleUser))
	for _, p := range turn().Parts {
		if !p.Thought {
			run.text += p.Text
		}
	}
	return run
}

func driveOllama(t *testing.T, gw, model string, stream bool) sdkRun {
	c, ctx := ollamaClient(t, gw, gatewayKey), context.Background()
	req := ollamaWeatherRequest(t)
	req.Model, req.Stream = model, &stream
	turn := func() oapi.Message {
		t.Helper()
		msg := oapi.Message{Role: "assistant"}
		err := c.Chat(ctx, req, func(r oapi.ChatResponse) error {
			msg.Content += r.Message.Content
			msg.Thinking += r.Message.Thinking
			msg.ToolCalls = append(msg.ToolCalls, r.Message.ToolCalls...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	msg := turn()
	var run sdkRun
	req.Messages = append(req.Messages, msg)
	for i, tc := range msg.ToolCalls {
		args, _ := json.Marshal(tc.Function.Arguments)
		run.calls = append(run.calls, llm.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: args})
		req.Messages = append(req.Messages, oapi.Message{Role: "tool", Content: resultText(i), ToolName: tc.Function.Name, ToolCallID: tc.ID})
	}
	run.text = turn().Content
	return run
}

func driveResponses(t *testing.T, gw, model string, stream bool) sdkRun {
	c, ctx := responsesClient(gw), context.Background()
	input := firstTurn()
	turn := func() *responses.Response {
		t.Helper()
		params := responses.ResponseNewParams{Model: model, Tools: []responses.ToolUnionParam{respWeather},
			Input: responses.ResponseNewParamsInputUnion{OfInputItemList: input}}
		if !stream {
			r, err := c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		s := c.Responses.NewStreaming(ctx, params)
		var done *responses.Response
		for s.Next() {
			if ev := s.Current(); ev.Type == "response.completed" {
				r := ev.AsResponseCompleted().Response
				done = &r
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if done == nil {
			t.Fatal("no response.completed")
		}
		return done
	}
	first := turn()
	var run sdkRun
	input = append(input, asInput(first)...)
	for i, fc := range functionCalls(first) {
		run.calls = append(run.calls, llm.ToolCall{ID: fc.CallID, Name: fc.Name, Arguments: json.RawMessage(fc.Arguments)})
		it := responses.ResponseInputItemParamOfFunctionCallOutput(resultText(i))
		it.OfFunctionCallOutput.CallID = openai.String(fc.CallID)
		input = append(input, it)
	}
	run.text = turn().OutputText()
	return run
}

func TestSDKProviderMatrix(t *testing.T) {
	drivers := []struct {
		name  string
		drive sdkDriver
	}{
		{"openai-go chat", driveOpenAIChat},
		{"openai-go responses", driveResponses},
		{"anthropic-sdk-go", driveAnthropic},
		{"genai", driveGenai},
		{"ollama", driveOllama},
	}
	for _, d := range drivers {
		for _, u := range matrixUpstreams {
			for _, stream := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/stream=%v", d.name, u.typ, stream), func(t *testing.T) {
					up := newRecordingUpstream(t, u)
					gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: u.typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider-own"}}}})
					run := d.drive(t, gw.URL, "p/"+u.model, stream)
					wantCalls, wantText := u.expect(t, stream)
					checkMatrixRun(t, u, up, run, wantCalls, wantText)
				})
			}
		}
	}
}

func checkMatrixRun(t *testing.T, u matrixUpstream, up *recordingUpstream, run sdkRun, wantCalls []llm.ToolCall, wantText string) {
	t.Helper()
	if len(run.calls) != len(wantCalls) || len(wantCalls) < 2 {
		t.Fatalf("client saw %d tool calls, the upstream made %d", len(run.calls), len(wantCalls))
	}
	seen := map[string]bool{}
	for i, c := range run.calls {
		if c.Name != wantCalls[i].Name || !sameJSON(c.Arguments, wantCalls[i].Arguments) {
			t.Fatalf("call %d: client saw %s(%s), upstream sent %s(%s)", i, c.Name, c.Arguments, wantCalls[i].Name, wantCalls[i].Arguments)
		}
		if c.ID == "" || seen[c.ID] {
			t.Fatalf("call %d: id %q missing or repeated", i, c.ID)
		}
		seen[c.ID] = true
	}
	if strings.TrimSpace(run.text) != strings.TrimSpace(wantText) || wantText == "" {
		t.Fatalf("final text %q, upstream sent %q", run.text, wantText)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.bodies) != 2 {
		t.Fatalf("upstream called %d times", len(up.bodies))
	}
	for i, h := range up.headers {
		var all []string
		for _, vs := range h {
			all = append(all, vs...)
		}
		joined := strings.Join(all, "\n")
		if strings.Contains(joined, gatewayKey) || !strings.Contains(joined, "sk-provider-own") {
			t.Fatalf("request %d upstream headers: %v", i, h)
		}
	}
	// The second turn reached the upstream with each result paired to
	// its call, in the provider's own format.
	second, err := u.decodeRequest(up.bodies[1])
	if err != nil {
		t.Fatalf("second upstream request is not valid %s: %v\n%s", u.typ, err, up.bodies[1])
	}
	var calls []llm.ToolCall
	var results []llm.ToolResult
	for _, m := range second.Messages {
		for _, p := range m.Parts {
			switch p.Type {
			case llm.PartToolCall:
				calls = append(calls, *p.ToolCall)
			case llm.PartToolResult:
				results = append(results, *p.ToolResult)
			}
		}
	}
	if len(calls) != len(wantCalls) || len(results) != len(wantCalls) {
		t.Fatalf("second upstream request: %d calls, %d results\n%s", len(calls), len(results), up.bodies[1])
	}
	for i, r := range results {
		var text string
		for _, c := range r.Content {
			text += c.Text
		}
		if r.CallID != calls[i].ID || !strings.Contains(text, resultText(i)) || calls[i].Name != wantCalls[i].Name {
			t.Fatalf("result %d (%s: %q) not paired with call %d (%s)\n%s", i, r.CallID, text, i, calls[i].ID, up.bodies[1])
		}
	}
	if s := partsString(second.System); !strings.Contains(s, "bot") && !strings.Contains(s, "one sentence") {
		t.Fatalf("system prompt did not reach the upstream: %q", s)
	}
}

func partsString(ps []llm.Part) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Text)
	}
	return b.String()
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
