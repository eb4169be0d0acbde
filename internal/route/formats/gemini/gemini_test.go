package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// A stream folds into exactly the response its non-streamed counterpart
// decodes to: same parts, minted ids, signatures and usage.
func TestStreamMatchesResponse(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "thinking"} {
		want, err := DecodeResponse(formattest.Testdata(t, "responses/"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/"+name+".sse")))))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: stream and response disagree\nstream   %s\nresponse %s", name, formattest.Indent(t, got), formattest.Indent(t, want))
		}
	}
}

func TestUsageConversion(t *testing.T) {
	r, err := DecodeResponse(formattest.Testdata(t, "responses/text.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Usage != (llm.Usage{InputTokens: 512, CacheReadTokens: 1536, OutputTokens: 19}) || r.Usage.PromptTokens() != 2048 {
		t.Fatalf("cached tokens must leave the input count: %+v", r.Usage)
	}
	r, _ = DecodeResponse(formattest.Testdata(t, "responses/parallel_tools.json"))
	if r.Usage != (llm.Usage{InputTokens: 96, OutputTokens: 156, ReasoningTokens: 122}) || r.StopReason != llm.StopToolUse {
		t.Fatalf("thoughts must join the output count: %+v %s", r.Usage, r.StopReason)
	}
	// Back to Gemini's counts exactly.
	for _, name := range []string{"text", "parallel_tools", "thinking"} {
		var in struct {
			UsageMetadata UsageMetadata `json:"usageMetadata"`
		}
		raw := formattest.Testdata(t, "responses/"+name+".json")
		_ = json.Unmarshal(raw, &in)
		r, _ := DecodeResponse(raw)
		if got := *usageOut(r.Usage); got != in.UsageMetadata {
			t.Errorf("%s: usage round trip %+v, want %+v", name, got, in.UsageMetadata)
		}
	}
}

func TestBlockedAndFailedStreams(t *testing.T) {
	var le *llm.Error
	if _, err := DecodeResponse(formattest.Testdata(t, "responses/blocked.json")); !errors.As(err, &le) || le.Status != 400 || le.Code != "SAFETY" {
		t.Fatalf("blocked prompt: %v", err)
	}
	collect := func(name string) error {
		_, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/"+name+".sse")))))
		return err
	}
	if err := collect("safety"); !errors.As(err, &le) || !le.InStream || le.Code != "SAFETY" || le.Retryable() {
		t.Fatalf("safety block in a 200 stream: %v", err)
	}
	if err := collect("error_midstream"); !errors.As(err, &le) || !le.InStream || le.Status != 503 || le.Type != llm.ErrOverloaded || !le.Retryable() {
		t.Fatalf("error object in a 200 stream: %#v", err)
	}
	if err := collect("truncated"); !errors.As(err, &le) || !le.InStream || !le.Retryable() {
		t.Fatalf("stream without a finish reason: %v", err)
	}
}

func TestDecodeRequestPairsResults(t *testing.T) {
	r, err := DecodeRequest("m", formattest.Testdata(t, "requests/parallel_tool_turn.json"), false)
	if err != nil {
		t.Fatal(err)
	}
	calls := r.Messages[1].Parts
	if calls[0].ToolCall.ID == calls[1].ToolCall.ID || calls[0].Signature == "" || calls[1].Signature != "" {
		t.Fatalf("minted ids or signatures: %+v", calls)
	}
	for i := range 2 {
		res := r.Messages[2+i].Parts[0].ToolResult
		if r.Messages[2+i].Role != llm.RoleTool || res.CallID != calls[i].ToolCall.ID || res.Name != "get_weather" {
			t.Fatalf("result %d not paired with call %d by name: %+v", i, i, res)
		}
	}
	if r.Messages[3].Parts[0].ToolResult.IsError != true || r.Messages[4].Role != llm.RoleUser {
		t.Fatalf("error result or trailing text: %+v", r.Messages[3:])
	}
	// Pairing by id wins over order.
	r, err = DecodeRequest("m", []byte(`{"contents":[{"role":"model","parts":[{"functionCall":{"id":"a","name":"f"}},{"functionCall":{"id":"b","name":"f"}}]},
		{"role":"user","parts":[{"functionResponse":{"id":"b","name":"f","response":{"x":1}}},{"functionResponse":{"name":"f","response":{"x":2}}}]}]}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := r.Messages[1].Parts[0].ToolResult.CallID, r.Messages[2].Parts[0].ToolResult.CallID; a != "b" || b != "a" || !r.Stream || !r.IncludeUsage {
		t.Fatalf("paired %q and %q", a, b)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for body, field := range map[string]string{
		`nope`: "request body",
		`{"contents":[{"role":"system","parts":[{"text":"x"}]}]}`:                                           "contents[0].role",
		`{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"%%%"}}]}]}`:                   "contents[0].parts[0].inlineData.data",
		`{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"candidateCount":2}}`:                   "generationConfig.candidateCount",
		`{"contents":[{"role":"user","parts":[{"functionCall":{"name":"f"}}]}]}`:                            "contents[0].parts[0].functionCall",
		`{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":[1]}}]}]}`:                "contents[0].parts[0].functionCall.args",
		`{"contents":[{"parts":[{"functionResponse":{"name":"f","response":"text"}}]}]}`:                    "contents[0].parts[0].functionResponse.response",
		`{"contents":[],"generationConfig":{"thinkingConfig":{"thinkingLevel":"ULTRA"}}}`:                   "thinkingLevel",
		`{"contents":[],"toolConfig":{"functionCallingConfig":{"mode":"SOMETIMES"}}}`:                       "toolConfig.functionCallingConfig.mode",
		`{"contents":[],"tools":[{"functionDeclarations":[{"description":"no name"}]}]}`:                    "tools[0].functionDeclarations[0].name",
		`{"contents":[],"systemInstruction":{"parts":[{"inlineData":{"mimeType":"image/png","data":""}}]}}`: "systemInstruction.parts[0]",
	} {
		_, err := DecodeRequest("m", []byte(body), false)
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 || !strings.Contains(le.Message, field) {
			t.Errorf("%s: %v (want a 400 naming %s)", body, err, field)
		}
	}
	if _, err := DecodeRequest("", []byte(`{"contents":[]}`), false); err == nil {
		t.Error("a missing model was accepted")
	}
}

func TestDecodeError(t *testing.T) {
	body := []byte(`{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`)
	e := DecodeError(429, http.Header{}, body)
	if e.Type != llm.ErrRateLimit || e.RetryAfter != 37*time.Second || e.Code != "RESOURCE_EXHAUSTED" || !e.Retryable() || e.Message != "Quota exceeded" {
		t.Fatalf("rate limit: %+v", e)
	}
	e = DecodeError(400, nil, []byte(`[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}]`))
	if e.Status != 401 || e.Type != llm.ErrAuthentication {
		t.Fatalf("invalid key: %+v", e)
	}
	e = DecodeError(503, http.Header{"Retry-After": {"5"}}, []byte(`upstream connect error`))
	if e.Type != llm.ErrOverloaded || e.RetryAfter != 5*time.Second {
		t.Fatalf("plain 503: %+v", e)
	}
	status, out := EncodeError(&llm.Error{Status: 529, Type: llm.ErrOverloaded, Message: "busy"})
	if status != 503 || string(out) != `{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}` {
		t.Fatalf("encoded %d %s", status, out)
	}
}

// The stream encoder sends a function call whole, in one chunk, however
// its arguments arrived, and puts finish reason and usage on the last
// chunk only.
func TestStreamEncoderBuffersCalls(t *testing.T) {
	evs := []llm.Event{
		{Type: llm.EventStart, ID: "r1", Model: "m", Usage: &llm.Usage{InputTokens: 10, CacheReadTokens: 5}},
		{Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartText}},
		{Type: llm.EventDelta, Index: 0, Delta: llm.Delta{Text: "Checking."}},
		{Type: llm.EventPartStop, Index: 0},
		{Type: llm.EventPartStart, Index: 1, Part: &llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "call_1", Name: "f"}}},
		{Type: llm.EventDelta, Index: 1, Delta: llm.Delta{Arguments: `{"city":`}},
		{Type: llm.EventDelta, Index: 1, Delta: llm.Delta{Arguments: `"Paris"}`}},
		{Type: llm.EventPartStop, Index: 1},
		{Type: llm.EventStop, StopReason: llm.StopToolUse, Usage: &llm.Usage{OutputTokens: 7, ReasoningTokens: 2}},
	}
	var out bytes.Buffer
	enc := NewStreamEncoder(&out)
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	chunks := strings.Split(strings.TrimSuffix(out.String(), "\r\n\r\n"), "\r\n\r\n")
	if len(chunks) != 2 {
		t.Fatalf("want 2 chunks, got %q", out.String())
	}
	var first, last GenerateContentResponse
	_ = json.Unmarshal([]byte(strings.TrimPrefix(chunks[0], "data: ")), &first)
	_ = json.Unmarshal([]byte(strings.TrimPrefix(chunks[1], "data: ")), &last)
	fc := last.Candidates[0].Content.Parts[0].FunctionCall
	if first.UsageMetadata != nil || first.Candidates[0].FinishReason != "" || fc == nil || string(fc.Args) != `{"city":"Paris"}` || fc.ID != "call_1" {
		t.Fatalf("chunks %q", chunks)
	}
	if last.Candidates[0].FinishReason != "STOP" || *last.UsageMetadata != (UsageMetadata{PromptTokenCount: 15, CachedContentTokenCount: 5,
		CandidatesTokenCount: 5, ThoughtsTokenCount: 2, TotalTokenCount: 22}) {
		t.Fatalf("last chunk %+v %+v", last.Candidates[0], last.UsageMetadata)
	}
}

// The client sends the provider key as x-goog-api-key (never in the
// URL), the model in the path, and streams with alt=sse.
func TestClient(t *testing.T) {
	var paths, keys []string
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.RequestURI())
		keys = append(keys, r.Header.Get("x-goog-api-key"))
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		bodies = append(bodies, body)
		switch {
		case strings.HasSuffix(r.URL.Path, ":generateContent"):
			w.Write(formattest.Testdata(t, "responses/text.json"))
		case strings.HasSuffix(r.URL.Path, ":streamGenerateContent"):
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(formattest.Testdata(t, "streams/parallel_tools.sse"))
		case strings.HasSuffix(r.URL.Path, ":batchEmbedContents"):
			w.Write([]byte(`{"embeddings":[{"values":[0.5,1]},{"values":[2,-1]}]}`))
		case r.URL.Query().Get("pageToken") == "":
			w.Write([]byte(`{"models":[{"name":"models/gemini-2.5-flash"}],"nextPageToken":"p2"}`))
		default:
			w.Write([]byte(`{"models":[{"name":"models/text-embedding-004"}]}`))
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/v1beta", APIKey: "provider-key", Headers: map[string]string{"x-goog-api-key": "override-attempt"}}
	ctx := context.Background()
	req := &llm.Request{Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}}}
	if r, err := c.Chat(ctx, req, "gemini-2.5-flash"); err != nil || r.Usage.CacheReadTokens != 1536 {
		t.Fatalf("chat: %+v %v", r, err)
	}
	s, err := c.Stream(ctx, req, "models/gemini-2.5-flash")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := llm.Collect(s); err != nil || len(r.ToolCalls()) != 2 {
		t.Fatalf("stream: %+v %v", r, err)
	}
	vecs, _, err := c.Embed(ctx, "text-embedding-004", []string{"a", "b"}, 2)
	if err != nil || len(vecs) != 2 || vecs[1][0] != 2 {
		t.Fatalf("embed: %v %v", vecs, err)
	}
	ids, err := c.Models(ctx)
	if err != nil || strings.Join(ids, ",") != "gemini-2.5-flash,text-embedding-004" {
		t.Fatalf("models: %v %v", ids, err)
	}
	want := []string{"/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
		"/v1beta/models/text-embedding-004:batchEmbedContents", "/v1beta/models?pageSize=1000", "/v1beta/models?pageSize=1000&pageToken=p2"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Fatalf("paths %v", paths)
	}
	for _, k := range keys {
		if k != "provider-key" {
			t.Fatalf("keys %v", keys)
		}
	}
	reqs := bodies[2]["requests"].([]any)
	if first := reqs[0].(map[string]any); len(reqs) != 2 || first["model"] != "models/text-embedding-004" || first["outputDimensionality"] != 2.0 {
		t.Fatalf("embed body %v", bodies[2])
	}
	// Errors carry the provider and Google's status.
	bad := &Client{BaseURL: srv.URL + "/nowhere", Provider: "g", HTTP: &http.Client{Transport: roundTrip(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 429, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"error":{"code":429,"message":"slow","status":"RESOURCE_EXHAUSTED"}}`))}, nil
	})}}
	_, err = bad.Chat(ctx, req, "m")
	var le *llm.Error
	if !errors.As(err, &le) || le.Provider != "g" || le.Type != llm.ErrRateLimit {
		t.Fatalf("error: %v", err)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An upstream that answers a stream request with a JSON array (no alt=sse
// support) is replayed as a stream.
func TestStreamReplaysJSONArray(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.Write([]byte("[" + string(formattest.Testdata(t, "responses/thinking.json")) + "]"))
	}))
	defer srv.Close()
	s, err := (&Client{BaseURL: srv.URL}).Stream(context.Background(), &llm.Request{}, "m")
	if err != nil {
		t.Fatal(err)
	}
	got, err := llm.Collect(s)
	want, _ := DecodeResponse(formattest.Testdata(t, "responses/thinking.json"))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed %+v %v", got, err)
	}
}

func TestEmbeddingAndCountBodies(t *testing.T) {
	inputs, dims, err := DecodeBatchEmbedContents([]byte(`{"requests":[{"model":"models/x","content":{"parts":[{"text":"a"},{"text":"b"}]},"outputDimensionality":8},{"model":"models/x","content":{"parts":[{"text":"c"}]},"output_dimensionality":8}]}`))
	if err != nil || len(inputs) != 2 || inputs[0] != "a\nb" || dims != 8 {
		t.Fatalf("batch: %v %d %v", inputs, dims, err)
	}
	if _, _, err := DecodeBatchEmbedContents([]byte(`{"requests":[{"content":{"parts":[{"text":"a"}]},"outputDimensionality":8},{"content":{"parts":[{"text":"c"}]}}]}`)); err == nil {
		t.Fatal("mixed dimensions accepted")
	}
	r, err := DecodeCountTokens("m", []byte(`{"generateContentRequest":{"model":"models/m","contents":[{"parts":[{"text":"hello there"}]}],"systemInstruction":{"parts":[{"text":"be brief"}]}}}`))
	if err != nil || len(r.System) != 1 || len(r.Messages) != 1 {
		t.Fatalf("count tokens: %+v %v", r, err)
	}
	if string(EncodeCountTokens(7)) != `{"totalTokens":7}` {
		t.Fatal("count tokens body")
	}
}
