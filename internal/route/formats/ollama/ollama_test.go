package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

func compact(t *testing.T, s []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, s); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return b.String()
}

// A stream folds into the same response as its non-streamed counterpart.
func TestStreamMatchesResponse(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "thinking"} {
		want, err := DecodeResponse(formattest.Testdata(t, "responses/"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/"+name+".ndjson")))))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Text() != want.Text() || got.StopReason != want.StopReason || got.Usage != want.Usage || len(got.Content) != len(want.Content) {
			t.Fatalf("%s: stream %+v\nresponse %+v", name, got, want)
		}
		for i, p := range got.Content {
			w := want.Content[i]
			if p.Type != w.Type || p.Text != w.Text {
				t.Fatalf("%s: part %d: %+v vs %+v", name, i, p, w)
			}
			if p.ToolCall != nil && (p.ToolCall.ID != w.ToolCall.ID || p.ToolCall.Name != w.ToolCall.Name ||
				compact(t, p.ToolCall.Arguments) != compact(t, w.ToolCall.Arguments)) {
				t.Fatalf("%s: tool call %d: %+v vs %+v", name, i, p.ToolCall, w.ToolCall)
			}
		}
		// And the client sees the same answer both ways.
		var nd bytes.Buffer
		enc := NewStreamEncoder(&nd, "m", nil)
		for _, ev := range llm.Events(want) {
			if err := enc.Encode(ev); err != nil {
				t.Fatal(err)
			}
		}
		folded := foldClient(t, nd.Bytes())
		whole, _ := EncodeResponse(want)
		var one ChatResponse
		if err := json.Unmarshal(whole, &one); err != nil {
			t.Fatal(err)
		}
		if folded.Message.Content != one.Message.Content || folded.Message.Thinking != one.Message.Thinking ||
			len(folded.Message.ToolCalls) != len(one.Message.ToolCalls) || folded.DoneReason != one.DoneReason ||
			folded.PromptEvalCount != one.PromptEvalCount || folded.EvalCount != one.EvalCount {
			t.Fatalf("%s: client stream %+v\nclient response %+v", name, folded, one)
		}
	}
}

// foldClient folds client NDJSON the way an Ollama client does.
func foldClient(t *testing.T, nd []byte) ChatResponse {
	t.Helper()
	var out ChatResponse
	lines := strings.Split(strings.TrimSuffix(string(nd), "\n"), "\n")
	for i, l := range lines {
		var c ChatResponse
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		if c.Done != (i == len(lines)-1) {
			t.Fatalf("done on line %d of %d", i, len(lines))
		}
		out.Message.Content += c.Message.Content
		out.Message.Thinking += c.Message.Thinking
		out.Message.ToolCalls = append(out.Message.ToolCalls, c.Message.ToolCalls...)
		if c.Done {
			out.Done, out.DoneReason, out.PromptEvalCount, out.EvalCount = true, c.DoneReason, c.PromptEvalCount, c.EvalCount
		}
	}
	return out
}

func TestStreamErrorsAndTruncation(t *testing.T) {
	_, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/error_midstream.ndjson")))))
	var le *llm.Error
	if !errors.As(err, &le) || !le.InStream || !strings.Contains(le.Message, "unexpected EOF") {
		t.Fatalf("in-stream error: %v", err)
	}
	if _, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/truncated.ndjson"))))); !errors.As(err, &le) || !le.Retryable() || !le.InStream {
		t.Fatalf("truncated stream: %v", err)
	}
	// A status on the error line is kept.
	s := NewStreamDecoder(io.NopCloser(strings.NewReader(`{"error":"model requires more system memory","status":500}` + "\n")))
	ev, _ := s.Next()
	if ev.Type != llm.EventError || ev.Err.Status != 500 || ev.Err.Message != "upstream stream failed: model requires more system memory" {
		t.Fatalf("error line: %+v", ev)
	}
	// A line longer than the bound is an error, not a hang or a panic.
	long := `{"model":"m","message":{"role":"assistant","content":"` + strings.Repeat("a", maxLine) + `"},"done":false}` + "\n"
	evs := formattest.Events(t, NewStreamDecoder(io.NopCloser(strings.NewReader(long))))
	if len(evs) != 1 || evs[0].Type != llm.EventError || !strings.Contains(evs[0].Err.Message, "longer than") {
		t.Fatalf("long line: %+v", evs)
	}
	// Garbage is an error event.
	evs = formattest.Events(t, NewStreamDecoder(io.NopCloser(strings.NewReader("data: {}\n"))))
	if len(evs) != 1 || evs[0].Type != llm.EventError {
		t.Fatalf("garbage: %+v", evs)
	}
}

func TestDecodeRequestDefaultsAndMapping(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"model":"m","messages":[{"role":"User","content":"hi"}],"options":{"num_predict":-1,"top_k":5.0}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Stream || r.MaxTokens != nil || *r.TopK != 5 || string(r.Extra["options"]) != `{"num_predict":-1}` || r.Messages[0].Role != llm.RoleUser {
		t.Fatalf("decoded %+v (extra %s)", r, r.Extra["options"])
	}
	r, err = DecodeRequest([]byte(`{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"stop":["a","b"],"num_predict":7}}`))
	if err != nil || r.Stream || *r.MaxTokens != 7 || len(r.Stop) != 2 {
		t.Fatalf("decoded %+v %v", r, err)
	}
	// Arguments sent as a JSON string holding an object are accepted.
	r, err = DecodeRequest([]byte(`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","content":"ok"}]}`))
	if err != nil || string(r.Messages[0].Parts[0].ToolCall.Arguments) != `{"a":1}` || r.Messages[1].Parts[0].ToolResult.CallID != "call_0" {
		t.Fatalf("decoded %+v %v", r, err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for _, c := range []struct{ body, field string }{
		{`nope`, "request body"},
		{`{"messages":[{"role":"user","content":"x"}]}`, "model"},
		{`{"model":"m"}`, "messages"},
		{`{"model":"m","messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role"},
		{`{"model":"m","messages":[{"role":"tool","content":"x","tool_name":"f"}]}`, "messages[0]"},
		{`{"model":"m","messages":[{"role":"user","content":"x","images":["%%%"]}]}`, "messages[0].images[0]"},
		{`{"model":"m","messages":[{"role":"system","content":"x","images":["aGk="]}]}`, "messages[0].images"},
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":[1]}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":{}}}]}]}`, "messages[0].tool_calls[0].function.name"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"format":"yaml"}`, "format"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"format":[1]}`, "format"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"think":"max"}`, "think"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"temperature":"hot"}}`, "options.temperature"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":1.5}}`, "options.num_predict"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"stop":5}}`, "options.stop"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"options":[]}`, "options"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"retrieval"}]}`, "tools[0]"},
		{`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]}`, "tools[0].function.parameters"},
	} {
		_, err := DecodeRequest([]byte(c.body))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 || le.Type != llm.ErrInvalidRequest || !strings.HasPrefix(le.Message, c.field) {
			t.Errorf("%s: %v (want a 400 naming %s)", c.body, err, c.field)
		}
	}
}

// Minted ids skip ids the conversation already uses, and ids minted for an
// upstream answer continue the request's count, matching what
// DecodeRequest mints when the same history comes back without ids.
func TestMintedToolCallIDs(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[
		{"function":{"name":"a","arguments":{}}},{"id":"call_1","function":{"name":"b","arguments":{}}},{"function":{"name":"c","arguments":{}}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range r.Messages[0].Parts {
		ids = append(ids, p.ToolCall.ID)
	}
	if strings.Join(ids, ",") != "call_0,call_1,call_2" {
		t.Fatalf("ids %v", ids)
	}
	resp, err := decodeResponse(formattest.Testdata(t, "responses/tools_noid.json"), requestMinter(r))
	if err != nil {
		t.Fatal(err)
	}
	if tc := resp.ToolCalls(); len(tc) != 2 || tc[0].ID != "call_3" || tc[1].ID != "call_4" || string(tc[1].Arguments) != "{}" || resp.StopReason != llm.StopToolUse {
		t.Fatalf("answer ids %+v", resp)
	}
	// The client sends the history back without ids: the same ids.
	hist := `{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":{}}},{"id":"call_1","function":{"name":"b","arguments":{}}},{"function":{"name":"c","arguments":{}}}]},
		{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}},{"function":{"name":"get_time","arguments":{}}}]},
		{"role":"tool","tool_name":"get_time","content":"21:04"},{"role":"tool","content":"rain"}]}`
	r, err = DecodeRequest([]byte(hist))
	if err != nil {
		t.Fatal(err)
	}
	if id := r.Messages[1].Parts[0].ToolCall.ID; id != "call_3" {
		t.Fatalf("re-minted %s", id)
	}
	// By name, then by order among the unanswered calls of the latest turn.
	if a, b := r.Messages[2].Parts[0].ToolResult, r.Messages[3].Parts[0].ToolResult; a.CallID != "call_4" || a.Name != "get_time" || b.CallID != "call_3" || b.Name != "get_weather" {
		t.Fatalf("pairing %+v %+v", a, b)
	}
}

func TestEncodeRequestRejectsWhatOllamaCannotTake(t *testing.T) {
	for _, parts := range [][]llm.Part{
		{{Type: llm.PartImage, Media: &llm.Media{URL: "https://example.com/cat.png"}}},
		{{Type: llm.PartAudio, Media: &llm.Media{MIMEType: "audio/wav", Data: []byte{1}}}},
		{{Type: llm.PartFile, Media: &llm.Media{MIMEType: "application/pdf", Data: []byte{1}}}},
	} {
		_, err := EncodeRequest(&llm.Request{Messages: []llm.Message{{Role: llm.RoleUser, Parts: parts}}}, "m", EncodeOptions{})
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 {
			t.Errorf("%s: %v", parts[0].Type, err)
		}
	}
	// Effort levels only for gpt-oss (or a native client); disabled is false.
	for _, c := range []struct {
		model  string
		rs     llm.Reasoning
		native bool
		want   string
	}{
		{"qwen3:8b", llm.Reasoning{Enabled: true, Effort: "high"}, false, "true"},
		{"qwen3:8b", llm.Reasoning{Enabled: true, Effort: "high"}, true, `"high"`},
		{"gpt-oss:120b", llm.Reasoning{Enabled: true, Effort: "xhigh"}, false, `"high"`},
		{"qwen3:8b", llm.Reasoning{Enabled: false}, false, "false"},
	} {
		rs := c.rs
		b, err := EncodeRequest(&llm.Request{Reasoning: &rs, Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "x"}}}}}, c.model, EncodeOptions{Native: c.native})
		var out ChatRequest
		if err != nil || json.Unmarshal(b, &out) != nil || string(out.Think) != c.want {
			t.Errorf("%s %+v: think %s, want %s (%v)", c.model, c.rs, out.Think, c.want, err)
		}
	}
}

func TestEncodeErrorAndDecodeError(t *testing.T) {
	status, body := EncodeError(&llm.Error{Status: 404, Type: llm.ErrNotFound, Message: "model \"x\" not found"})
	if status != 404 || string(body) != `{"error":"model \"x\" not found"}` {
		t.Fatalf("%d %s", status, body)
	}
	if status, _ := EncodeError(&llm.Error{Message: "unreachable"}); status != 502 {
		t.Fatalf("status 0 rendered as %d", status)
	}
	e := DecodeError(429, http.Header{"Retry-After": {"3"}}, []byte(`{"error":"too many requests"}`))
	if e.Type != llm.ErrRateLimit || e.Message != "too many requests" || e.RetryAfter.Seconds() != 3 || !e.Retryable() {
		t.Fatalf("%+v", e)
	}
	if e := DecodeError(502, nil, []byte("<html>bad gateway</html>")); e.Message != "Bad Gateway" {
		t.Fatalf("%+v", e)
	}
}

// The encoder buffers argument fragments and sends each tool call whole,
// and a stream cut short ends with an error line.
func TestStreamEncoderToolCallsWhole(t *testing.T) {
	var out bytes.Buffer
	enc := NewStreamEncoder(&out, "gw/model", nil)
	for _, ev := range []llm.Event{
		{Type: llm.EventStart, Model: "up", Usage: &llm.Usage{InputTokens: 10, CacheReadTokens: 90}},
		{Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "toolu_1", Name: "f"}}},
		{Type: llm.EventDelta, Index: 0, Delta: llm.Delta{Arguments: `{"a":`}},
		{Type: llm.EventDelta, Index: 0, Delta: llm.Delta{Arguments: `1}`}},
		{Type: llm.EventPartStop, Index: 0},
		{Type: llm.EventPartStart, Index: 1, Part: &llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "toolu_2", Name: "g"}}},
		{Type: llm.EventStop, StopReason: llm.StopToolUse, Usage: &llm.Usage{OutputTokens: 7}},
	} {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	got := foldClient(t, out.Bytes())
	if len(got.Message.ToolCalls) != 2 || string(got.Message.ToolCalls[0].Function.Arguments) != `{"a":1}` || string(got.Message.ToolCalls[1].Function.Arguments) != `{}` ||
		got.Message.ToolCalls[1].Function.Index != 1 || got.DoneReason != "stop" || got.PromptEvalCount != 100 || got.EvalCount != 7 {
		t.Fatalf("%s", out.Bytes())
	}
	if strings.Count(out.String(), "\n") != 3 || !strings.Contains(out.String(), `"model":"gw/model"`) {
		t.Fatalf("lines: %s", out.Bytes())
	}
	out.Reset()
	enc = NewStreamEncoder(&out, "", nil)
	_ = enc.Encode(llm.Event{Type: llm.EventStart, Model: "up"})
	if err := enc.Close(); err != nil || !strings.HasPrefix(out.String(), `{"error":`) {
		t.Fatalf("close: %v %s", err, out.Bytes())
	}
}

func TestClient(t *testing.T) {
	var paths, auths []string
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		paths, auths, bodies = append(paths, r.Method+" "+r.URL.Path), append(auths, r.Header.Get("Authorization")), append(bodies, body)
		switch r.URL.Path {
		case "/api/chat":
			if body["stream"] == true {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.Write(formattest.Testdata(t, "streams/parallel_tools.ndjson"))
				return
			}
			if body["model"] == "missing" {
				w.WriteHeader(404)
				io.WriteString(w, `{"error":"model \"missing\" not found, try pulling it first"}`)
				return
			}
			w.Write(formattest.Testdata(t, "responses/text.json"))
		case "/api/embed":
			io.WriteString(w, `{"model":"nomic-embed-text","embeddings":[[0.1,0.2],[0.3,0.4]],"total_duration":1,"prompt_eval_count":6}`)
		case "/api/tags":
			io.WriteString(w, `{"models":[{"name":"qwen3:8b","model":"qwen3:8b","modified_at":"2026-01-10T10:00:00Z","size":5225376047,"digest":"500a1f06","details":{"format":"gguf","family":"qwen3","parameter_size":"8.2B","quantization_level":"Q4_K_M"}}]}`)
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/api/", APIKey: "ok-key", Headers: map[string]string{"Authorization": "Bearer other"}, Provider: "local"}
	ctx := context.Background()
	req := &llm.Request{System: []llm.Part{{Type: llm.PartText, Text: "sys"}}, Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}}}
	resp, err := c.Chat(ctx, req, "qwen3:8b")
	if err != nil || resp.Text() == "" || resp.Usage.InputTokens != 212 || resp.Usage.OutputTokens != 17 {
		t.Fatalf("chat %+v %v", resp, err)
	}
	if bodies[0]["stream"] != false || bodies[0]["messages"].([]any)[0].(map[string]any)["role"] != "system" {
		t.Fatalf("chat body %v", bodies[0])
	}
	s, err := c.Stream(ctx, req, "qwen3:8b")
	if err != nil {
		t.Fatal(err)
	}
	full, err := llm.Collect(s)
	if err != nil || len(full.ToolCalls()) != 2 || full.StopReason != llm.StopToolUse {
		t.Fatalf("stream %+v %v", full, err)
	}
	_, err = c.Chat(ctx, req, "missing")
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 404 || le.Provider != "local" || !strings.Contains(le.Message, "not found") {
		t.Fatalf("404: %v", err)
	}
	vecs, u, err := c.Embed(ctx, "nomic-embed-text", []string{"a", "b"}, 2)
	if err != nil || len(vecs) != 2 || vecs[1][1] != 0.4 || u.InputTokens != 6 || bodies[3]["dimensions"] != float64(2) {
		t.Fatalf("embed %v %+v %v %v", vecs, u, err, bodies[3])
	}
	ids, err := c.Models(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "qwen3:8b" {
		t.Fatalf("models %v %v", ids, err)
	}
	want := []string{"POST /api/chat", "POST /api/chat", "POST /api/chat", "POST /api/embed", "GET /api/tags"}
	if strings.Join(paths, ",") != strings.Join(want, ",") {
		t.Fatalf("paths %v", paths)
	}
	for _, a := range auths {
		if a != "Bearer ok-key" {
			t.Fatalf("authorization %q", a)
		}
	}
	// An unreachable server is retryable.
	dead := &Client{BaseURL: "http://127.0.0.1:1"}
	if _, err := dead.Chat(ctx, req, "m"); !errors.As(err, &le) || !le.Retryable() || le.Provider != "ollama" {
		t.Fatalf("unreachable: %v", err)
	}
}

// /api/generate: what is refused (naming the field), what is only a
// model load, and that the prompt alone is the conversation.
func TestDecodeGenerateRequest(t *testing.T) {
	for body, field := range map[string]string{
		`{"prompt":"x"}`: "model",
		`{"model":"m","prompt":"x","suffix":"}"}`:      "suffix",
		`{"model":"m","prompt":"x","context":"abc"}`:   "context",
		`{"model":"m","prompt":"x","context":[1.5]}`:   "context",
		`{"model":"m","prompt":"x","format":"yaml"}`:   "format",
		`{"model":"m","prompt":"x","images":["%%%"]}`:  "images[0]",
		`{"model":"m","prompt":"x","options":[1]}`:     "options",
		`{"model":"m","prompt":"x","think":"extreme"}`: "think",
	} {
		_, _, err := DecodeGenerateRequest([]byte(body))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 || !strings.HasPrefix(le.Message, field) {
			t.Fatalf("%s: %v, want a 400 naming %s", body, err, field)
		}
	}
	for body, want := range map[string]string{
		`{"model":"m"}`:                          GenerateLoad,
		`{"model":"m","keep_alive":"5m"}`:        GenerateLoad,
		`{"model":"m","keep_alive":0}`:           GenerateUnload,
		`{"model":"m","keep_alive":"0s"}`:        GenerateUnload,
		`{"model":"m","prompt":"hi"}`:            "",
		`{"model":"m","images":["aGVsbG8="]}`:    "",
		`{"model":"m","prompt":"","context":[]}`: GenerateLoad,
	} {
		req, mode, err := DecodeGenerateRequest([]byte(body))
		if err != nil || mode != want {
			t.Fatalf("%s: mode %q (%v), want %q", body, mode, err, want)
		}
		if !req.Stream || len(req.Messages) != 1 || req.Messages[0].Role != llm.RoleUser {
			t.Fatalf("%s: %+v", body, req)
		}
	}
}
