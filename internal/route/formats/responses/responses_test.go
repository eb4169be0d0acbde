package responses

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// A stream folds into the same response as its non-streamed counterpart.
func TestStreamMatchesResponse(t *testing.T) {
	for _, name := range []string{"text", "parallel_tools", "reasoning"} {
		want, err := DecodeResponse(formattest.Testdata(t, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, name+".sse")))))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got.Created = want.Created
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			t.Fatalf("%s:\nstream   %s\nresponse %s", name, gj, wj)
		}
	}
}

// sseEvents splits an SSE body into (name, data) pairs.
func sseEvents(t *testing.T, body []byte) (names []string, datas []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, n)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			datas = append(datas, m)
		}
	}
	return names, datas
}

// What the encoder streams agrees with itself (event names, types and
// sequence numbers), with the non-streamed response object, and decodes
// back into the same canonical response.
func TestStreamEncoderAgreement(t *testing.T) {
	for _, name := range []string{"text", "parallel_tools", "reasoning"} {
		t.Run(name, func(t *testing.T) {
			meta := testMeta(t)
			evs := decodeAll(t, formattest.Testdata(t, name+".sse"))
			out := encodeAll(t, meta, evs)
			names, datas := sseEvents(t, out)
			if len(names) != len(datas) || len(names) < 4 {
				t.Fatalf("%d names, %d data lines", len(names), len(datas))
			}
			for i, d := range datas {
				if d["type"] != names[i] || d["sequence_number"] != float64(i) {
					t.Fatalf("event %d: name %s, data %v", i, names[i], d)
				}
			}
			if names[0] != "response.created" || names[1] != "response.in_progress" || names[len(names)-1] != "response.completed" {
				t.Fatalf("event order: %v", names)
			}
			full, err := llm.Collect(&llm.SliceStream{Events: evs})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(Complete(meta, full))
			got, _ := json.Marshal(datas[len(datas)-1]["response"])
			var a, b any
			_ = json.Unmarshal(want, &a)
			_ = json.Unmarshal(got, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("response.completed differs from the response object:\n got %s\nwant %s", got, want)
			}
			again, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(out))))
			if err != nil {
				t.Fatal(err)
			}
			again.ID, again.Created = full.ID, full.Created
			if !reflect.DeepEqual(again, full) {
				t.Fatalf("re-decoded stream differs:\n%+v\n%+v", again, full)
			}
		})
	}
}

func TestUsageConversion(t *testing.T) {
	in := &Usage{InputTokens: 2190, InputTokensDetails: InputTokensDetails{CachedTokens: 2048}, OutputTokens: 300,
		OutputTokensDetails: OutputTokensDetails{ReasoningTokens: 200}, TotalTokens: 2490}
	u := usageIn(in)
	if u.InputTokens != 142 || u.CacheReadTokens != 2048 || u.OutputTokens != 300 || u.ReasoningTokens != 200 {
		t.Fatalf("usageIn %+v", u)
	}
	if back := usageOut(u); !reflect.DeepEqual(back, in) {
		t.Fatalf("usageOut %+v", back)
	}
	// Anthropic-style cache writes count as input on the Responses side.
	w := usageOut(llm.Usage{InputTokens: 10, CacheReadTokens: 5, CacheWriteTokens: 7, OutputTokens: 3})
	if w.InputTokens != 22 || w.InputTokensDetails.CachedTokens != 5 || w.TotalTokens != 25 {
		t.Fatalf("cache writes %+v", w)
	}
	if bad := usageIn(&Usage{InputTokens: 1, InputTokensDetails: InputTokensDetails{CachedTokens: 9}}); bad.InputTokens != 0 {
		t.Fatalf("negative input %+v", bad)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for body, field := range map[string]string{
		`nope`:                    "request body",
		`{"input":"hi"}`:          "model",
		`{"model":"m"}`:           "input",
		`{"model":"m","input":5}`: "input",
		`{"model":"m","input":[{"type":"message","role":"wizard","content":"x"}]}`:                 "input[0].role",
		`{"model":"m","input":[{"type":"function_call","name":"f"}]}`:                              "input[0]",
		`{"model":"m","input":[{"type":"function_call_output","output":"x"}]}`:                     "input[0].call_id",
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_image"}]}]}`:               "input[0].content[0].image_url",
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}`: "input[0].content[0].file_id",
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_audio"}]}]}`:               "input[0].content[0].type",
		`{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`:                           "input[0]",
		`{"model":"m","input":[{"type":"web_search_call"}]}`:                                       "input[0].type",
		`{"model":"m","input":"hi","tools":[{"type":"function"}]}`:                                 "tools[0].name",
		`{"model":"m","input":"hi","tool_choice":"sometimes"}`:                                     "tool_choice",
		`{"model":"m","input":"hi","tool_choice":{"type":"file_search"}}`:                          "tool_choice",
		`{"model":"m","input":"hi","text":{"format":{"type":"yaml"}}}`:                             "text.format.type",
		`{"model":"m","input":"hi","text":{"format":{"type":"json_schema"}}}`:                      "text.format",
		`{"model":"m","input":"hi","instructions":7}`:                                              "instructions",
		`{"model":"m","input":"hi","max_output_tokens":0}`:                                         "max_output_tokens",
		`{"model":"m","input":"hi","conversation":"conv_1"}`:                                       "conversation",
	} {
		_, err := DecodeRequest([]byte(body))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != http.StatusBadRequest || !strings.HasPrefix(le.Message, field) {
			t.Errorf("%s: got %v, want a 400 about %s", body, err, field)
		}
	}
}

func TestDecodeRequestShapes(t *testing.T) {
	in, err := DecodeRequest([]byte(`{"model":"m","previous_response_id":"resp_1","store":false,"stream":true,
		"input":[{"role":"assistant","content":"earlier"},{"type":"function_call","call_id":"c1","name":"f","arguments":""},
		{"type":"reasoning","summary":[]}],"tools":[{"type":"web_search"},{"type":"function","name":"f"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := in.Request
	if in.Store || in.PreviousResponseID != "resp_1" || !r.Stream || in.Instructions != 0 {
		t.Fatalf("flags %+v", in)
	}
	// Assistant-side items form one assistant turn; an empty reasoning
	// item is dropped; empty arguments become {}.
	if len(r.Messages) != 1 || len(r.Messages[0].Parts) != 2 || string(r.Messages[0].Parts[1].ToolCall.Arguments) != "{}" {
		t.Fatalf("messages %+v", r.Messages)
	}
	if len(r.Tools) != 1 || !BuiltinTools(r) || string(r.Extra[ExtraBuiltinTools]) != `[{"type":"web_search"}]` {
		t.Fatalf("tools %+v extra %s", r.Tools, r.Extra[ExtraBuiltinTools])
	}
	// previous_response_id alone (no input) is a valid continuation.
	if _, err := DecodeRequest([]byte(`{"model":"m","previous_response_id":"resp_1"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeError(t *testing.T) {
	status, body := EncodeError(&llm.Error{Status: 400, Type: llm.ErrInvalidRequest, Code: "previous_response_not_found",
		Message: "Previous response with id 'resp_x' not found."})
	if status != 400 || string(body) != `{"error":{"message":"Previous response with id 'resp_x' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}` {
		t.Fatalf("%d %s", status, body)
	}
	_, body = EncodeError(&llm.Error{Status: 400, Type: llm.ErrInvalidRequest, Message: "input[2].call_id: required"})
	if !strings.Contains(string(body), `"param":"input[2].call_id"`) {
		t.Fatalf("param: %s", body)
	}
	status, body = EncodeError(&llm.Error{Type: llm.ErrRateLimit, Message: "slow"})
	if status != http.StatusBadGateway || !strings.Contains(string(body), `"type":"rate_limit_error","param":null,"code":null`) {
		t.Fatalf("%d %s", status, body)
	}
}

func TestStreamErrorsAndTruncation(t *testing.T) {
	var le *llm.Error
	_, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "error_midstream.sse")))))
	if !errors.As(err, &le) || !le.InStream || le.Code != "server_error" || !le.Retryable() || !strings.Contains(le.Message, "server had an error") {
		t.Fatalf("error event: %v", err)
	}
	_, err = llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "failed.sse")))))
	if !errors.As(err, &le) || le.Status != http.StatusTooManyRequests || !le.InStream || !le.Retryable() {
		t.Fatalf("response.failed: %#v", err)
	}
	sse := formattest.Testdata(t, "text.sse")
	cut := sse[:bytes.Index(sse, []byte("event: response.completed"))]
	if _, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(cut)))); !errors.As(err, &le) || !le.Retryable() {
		t.Fatalf("truncated stream: %v", err)
	}
	// A non-streamed failed response is an error too.
	b, _ := json.Marshal(Response{Status: "failed", Error: &ResponseError{Code: "invalid_image", Message: "bad image"}})
	if _, err := DecodeResponse(b); !errors.As(err, &le) || le.Status != 400 || le.Code != "invalid_image" {
		t.Fatalf("failed response: %v", err)
	}
	// Encoder: a stream that breaks off ends as failed, not completed.
	var out bytes.Buffer
	enc := NewStreamEncoder(&out, testMeta(t))
	_ = enc.Encode(llm.Event{Type: llm.EventStart, ID: "x"})
	_ = enc.Encode(llm.Event{Type: llm.EventPartStart, Part: &llm.Part{Type: llm.PartText}})
	_ = enc.Close()
	names, _ := sseEvents(t, out.Bytes())
	if names[len(names)-2] != "error" || names[len(names)-1] != "response.failed" {
		t.Fatalf("truncated encoder stream: %v", names)
	}
	if err := enc.Encode(llm.Event{Type: llm.EventStop}); err == nil {
		t.Fatal("encode after the end accepted")
	}
}

// Items sent only whole (no deltas) still arrive, and an incomplete
// response maps to max_tokens.
func TestStreamDecoderWholeItems(t *testing.T) {
	sse := "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"m\"}}\n\n" +
		"data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"hello\"}]}}\n\n" +
		"data: {\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}\n\n" +
		"data: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":5,\"output_tokens\":2}}}\n\n"
	r, err := llm.Collect(NewStreamDecoder(io.NopCloser(strings.NewReader(sse))))
	if err != nil {
		t.Fatal(err)
	}
	if r.Text() != "hello" || len(r.ToolCalls()) != 1 || string(r.ToolCalls()[0].Arguments) != `{"a":1}` || r.StopReason != llm.StopMaxTokens || r.Usage.InputTokens != 5 {
		t.Fatalf("%+v", r)
	}
}

// The client sends the provider's key, store:false and the whole
// conversation to {base}/responses, and maps upstream errors.
func TestClient(t *testing.T) {
	var got *http.Request
	var body map[string]any
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		_ = json.NewDecoder(r.Body).Decode(&body)
		if status != 200 {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
			return
		}
		if body["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write(formattest.Testdata(t, "parallel_tools.sse"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(formattest.Testdata(t, "text.json"))
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/v1/", APIKey: "sk-up", Headers: map[string]string{"Authorization": "Bearer stolen", "X-Extra": "1"}, Provider: "oa"}
	req := &llm.Request{Model: "oa/gpt", System: []llm.Part{{Type: llm.PartText, Text: "be brief"}},
		Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}},
		Extra:    map[string]json.RawMessage{"truncation": json.RawMessage(`"auto"`)}}
	r, err := c.Chat(t.Context(), req, "gpt-4.1")
	if err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/v1/responses" || got.Header.Get("Authorization") != "Bearer sk-up" || got.Header.Get("X-Extra") != "1" {
		t.Fatalf("request %s %v", got.URL, got.Header)
	}
	if body["store"] != false || body["instructions"] != "be brief" || body["model"] != "gpt-4.1" || body["truncation"] != nil {
		t.Fatalf("body %v", body)
	}
	if r.Usage.CacheReadTokens != 2048 || r.Usage.InputTokens != 142 {
		t.Fatalf("usage %+v", r.Usage)
	}
	s, err := c.Stream(WithNative(t.Context()), req, "gpt-4.1")
	if err != nil {
		t.Fatal(err)
	}
	sr, err := llm.Collect(s)
	if err != nil || len(sr.ToolCalls()) != 2 || sr.StopReason != llm.StopToolUse || body["truncation"] != "auto" {
		t.Fatalf("stream %+v %v body %v", sr, err, body)
	}
	status = 429
	_, err = c.Chat(t.Context(), req, "gpt-4.1")
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 429 || le.Code != "rate_limit_exceeded" || le.RetryAfter.Seconds() != 3 || le.Provider != "oa" {
		t.Fatalf("error %#v", err)
	}
}

// Canonical content from other providers: thinking without a signature
// is not sent; media and tool results are.
func TestEncodeRequestForeignContent(t *testing.T) {
	req := &llm.Request{Messages: []llm.Message{
		{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "look"}, {Type: llm.PartImage, Media: &llm.Media{MIMEType: "image/png", Data: []byte{1, 2}}}}},
		{Role: llm.RoleAssistant, Parts: []llm.Part{{Type: llm.PartThinking, Text: "hmm"}, {Type: llm.PartText, Text: "ok"},
			{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "toolu_1", Name: "f", Arguments: json.RawMessage(`{}`)}}}},
		{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult, ToolResult: &llm.ToolResult{CallID: "toolu_1", IsError: true}}}},
	}, Reasoning: &llm.Reasoning{Enabled: true, BudgetTokens: 16000}}
	b, err := EncodeRequest(req, "m", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"image_url":"data:image/png;base64,AQI="`, `{"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]}`,
		`{"type":"function_call_output","call_id":"toolu_1","output":"error"}`, `"reasoning":{"effort":"high","summary":"auto"}`, `"include":["reasoning.encrypted_content"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %s in %s", want, s)
		}
	}
	if strings.Contains(s, "hmm") {
		t.Errorf("unsigned thinking sent: %s", s)
	}
	req.Messages[0].Parts = append(req.Messages[0].Parts, llm.Part{Type: llm.PartAudio, Media: &llm.Media{}})
	var le *llm.Error
	if _, err := EncodeRequest(req, "m", EncodeOptions{}); !errors.As(err, &le) || le.Status != 400 || !strings.HasPrefix(le.Message, "messages[0]") {
		t.Fatalf("audio: %v", err)
	}
}
