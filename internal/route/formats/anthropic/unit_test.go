package anthropic

import (
	"bytes"
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

func TestDecodeRequestErrorsNameTheField(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct{ body, want string }{
		{`not json`, "request body"},
		{`[]`, "request body"},
		{`null`, "request body"},
		{`{"max_tokens":10,` + msgs + `}`, "model: Field required"},
		{`{"model":"m",` + msgs + `}`, "max_tokens: Field required"},
		{`{"model":"m","max_tokens":"ten",` + msgs + `}`, "max_tokens"},
		{`{"model":"m","max_tokens":0,` + msgs + `}`, "max_tokens"},
		{`{"model":"m","max_tokens":10}`, "messages: Field required"},
		{`{"model":"m","max_tokens":10,"messages":[]}`, "messages: at least one"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"system","content":"x"}]}`, "messages[0].role"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"user"}]}`, "messages[0].content"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":[1]}]}]}`, "messages[0].content[0].input"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"%%%"}}]}]}`, "messages[0].content[0].source.data"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"image"}]}]}`, "messages[0].content[0].source"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`, "messages[0].content[0].tool_use_id"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"a"}]}]}`, "messages[0].content[0].type"},
		{`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[{"type":"server_tool_use"}]}]}`, "messages[0].content[0].type"},
		{`{"model":"m","max_tokens":10,"tool_choice":{"type":"tool"},` + msgs + `}`, "tool_choice.name"},
		{`{"model":"m","max_tokens":10,"tool_choice":{"type":"sometimes"},` + msgs + `}`, "tool_choice.type"},
		{`{"model":"m","max_tokens":10,"thinking":{"type":"enabled"},` + msgs + `}`, "thinking.budget_tokens"},
		{`{"model":"m","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search"}],` + msgs + `}`, "tools[0].type"},
		{`{"model":"m","max_tokens":10,"tools":[{"input_schema":{}}],` + msgs + `}`, "tools[0].name"},
		{`{"model":"m","max_tokens":10,"metadata":{"user_id":7},` + msgs + `}`, "metadata.user_id"},
		{`{"model":"m","max_tokens":10,"temperature":"hot",` + msgs + `}`, "temperature"},
		{`{"model":"m","max_tokens":10,"system":[{"type":"image"}],` + msgs + `}`, "system[0].type"},
	}
	for _, c := range cases {
		_, err := DecodeRequest([]byte(c.body))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 || le.Type != llm.ErrInvalidRequest {
			t.Errorf("%s: error %v, want a 400 llm.Error", c.body, err)
			continue
		}
		if !strings.Contains(le.Message, c.want) {
			t.Errorf("%s: message %q does not name %q", c.body, le.Message, c.want)
		}
	}
}

func TestDecodeCountTokensNeedsNoMaxTokens(t *testing.T) {
	r, err := DecodeCountTokens([]byte(`{"model":"claude-sonnet-4-5","system":"be brief","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxTokens != nil || len(r.System) != 1 || len(r.Messages) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestDecodeRequestKeepsOrderAroundToolResults(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"model":"m","max_tokens":10,"messages":[
		{"role":"assistant","content":[{"type":"tool_use","id":"toolu_a","name":"f","input":{}},{"type":"tool_use","id":"toolu_b","name":"g"}]},
		{"role":"user","content":[{"type":"text","text":"before"},
			{"type":"tool_result","tool_use_id":"toolu_a","content":"A","cache_control":{"type":"ephemeral"}},
			{"type":"tool_result","tool_use_id":"toolu_b","is_error":true,"content":[{"type":"text","text":"B"}]},
			{"type":"text","text":"after"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, m := range r.Messages {
		roles = append(roles, string(m.Role))
	}
	if got := strings.Join(roles, ","); got != "assistant,user,tool,tool,user" {
		t.Fatalf("roles %s", got)
	}
	a, b := r.Messages[2].Parts[0], r.Messages[3].Parts[0].ToolResult
	if a.ToolResult.Name != "f" || a.CacheControl == nil || b.Name != "g" || !b.IsError || b.Content[0].Text != "B" {
		t.Fatalf("results %+v %+v", a, b)
	}
	if args := string(r.Messages[0].Parts[1].ToolCall.Arguments); args != "{}" {
		t.Fatalf("missing input became %s", args)
	}
}

func TestEncodeRequestArguments(t *testing.T) {
	for args, want := range map[string]string{
		``:                  `{}`,
		`  `:                `{}`,
		`{"city": "Paris"}`: `{"city":"Paris"}`,
		`{"city": "Par`:     `{"_invalid_arguments":"{\"city\": \"Par"}`,
		`["Paris"]`:         `{"_invalid_arguments":"[\"Paris\"]"}`,
	} {
		req := &llm.Request{Messages: []llm.Message{
			{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "go"}}},
			{Role: llm.RoleAssistant, Parts: []llm.Part{{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "functions.f:0", Name: "f", Arguments: json.RawMessage(args)}}}},
			{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult, ToolResult: &llm.ToolResult{CallID: "functions.f:0", Content: []llm.Part{{Type: llm.PartText, Text: "ok"}}}}}},
		}}
		body, err := EncodeRequest(req, "m", EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var w Request
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatal(err)
		}
		tu := w.Messages[1].Content[0]
		if string(tu.Input) != want {
			t.Errorf("arguments %q → input %s, want %s", args, tu.Input, want)
		}
		if tu.ID != "functions_f_0" || w.Messages[2].Content[0].ToolUseID != tu.ID {
			t.Errorf("ids %q / %q", tu.ID, w.Messages[2].Content[0].ToolUseID)
		}

		out, err := EncodeResponse(&llm.Response{ID: "msg_1", Content: []llm.Part{{Type: llm.PartToolCall,
			ToolCall: &llm.ToolCall{ID: "call_1", Name: "f", Arguments: json.RawMessage(args)}}}, StopReason: llm.StopEnd})
		if err != nil {
			t.Fatal(err)
		}
		var resp Response
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		if string(resp.Content[0].Input) != want || *resp.StopReason != "tool_use" {
			t.Errorf("response: input %s stop %s", resp.Content[0].Input, *resp.StopReason)
		}
	}
}

func TestEncodeRequestMergesAndOrders(t *testing.T) {
	text := func(s string) llm.Part { return llm.Part{Type: llm.PartText, Text: s} }
	result := func(id string) llm.Part {
		return llm.Part{Type: llm.PartToolResult, ToolResult: &llm.ToolResult{CallID: id}}
	}
	req := &llm.Request{
		System: []llm.Part{text(""), text("sys")},
		Messages: []llm.Message{
			{Role: llm.RoleUser, Parts: []llm.Part{text("a")}},
			{Role: llm.RoleUser, Parts: []llm.Part{text("b")}},
			{Role: llm.RoleAssistant, Parts: []llm.Part{text(""), {Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "t1", Name: "f"}},
				{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "t2", Name: "f"}}}},
			{Role: llm.RoleUser, Parts: []llm.Part{text("interjection")}},
			{Role: llm.RoleTool, Parts: []llm.Part{result("t1")}},
			{Role: llm.RoleTool, Parts: []llm.Part{result("t2")}},
			{Role: llm.RoleAssistant, Parts: []llm.Part{text("")}}, // empty: dropped
			{Role: llm.RoleUser, Parts: []llm.Part{text("thanks"), {Type: llm.PartThinking, Text: "x", Signature: "s"}}},
		},
	}
	body, err := EncodeRequest(req, "m", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var w Request
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range w.Messages {
		var kinds []string
		for _, b := range m.Content {
			k := b.Type
			if b.Type == BlockText {
				k = b.Text
			}
			if b.Type == BlockToolResult {
				k = b.ToolUseID
			}
			kinds = append(kinds, k)
		}
		got = append(got, m.Role+":"+strings.Join(kinds, "+"))
	}
	want := "user:a+b assistant:tool_use+tool_use user:t1+t2+interjection+thanks"
	if strings.Join(got, " ") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(w.System) != 1 || w.System[0].Text != "sys" || *w.MaxTokens != DefaultMaxTokens {
		t.Fatalf("system %+v max_tokens %d", w.System, *w.MaxTokens)
	}

	for _, bad := range []*llm.Request{
		{Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartAudio, Media: &llm.Media{Data: []byte{1}}}}}}},
		{Messages: []llm.Message{{Role: "system", Parts: []llm.Part{text("x")}}}},
		{Messages: []llm.Message{{Role: llm.RoleAssistant, Parts: []llm.Part{result("t")}}}},
	} {
		_, err := EncodeRequest(bad, "m", EncodeOptions{})
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 {
			t.Errorf("%+v: %v, want a 400", bad.Messages[0], err)
		}
	}
}

func TestEncodeRequestThinking(t *testing.T) {
	intp := func(n int) *int { return &n }
	temp := 0.5
	cases := []struct {
		name      string
		r         llm.Request
		opts      EncodeOptions
		budget    int // 0: no thinking
		maxTokens int
		temp      bool
	}{
		{"effort low", llm.Request{Reasoning: &llm.Reasoning{Enabled: true, Effort: "low"}}, EncodeOptions{}, 1024, 4096, false},
		{"effort medium", llm.Request{Reasoning: &llm.Reasoning{Enabled: true, Effort: "medium"}}, EncodeOptions{}, 4096, 8192, false},
		{"effort high raises max", llm.Request{MaxTokens: intp(1000), Reasoning: &llm.Reasoning{Effort: "high"}}, EncodeOptions{}, 16384, 17384, false},
		{"small budget floored", llm.Request{Reasoning: &llm.Reasoning{Enabled: true, BudgetTokens: 500}}, EncodeOptions{DefaultMaxTokens: 8192}, 1024, 8192, false},
		{"disabled", llm.Request{Reasoning: &llm.Reasoning{Enabled: false}}, EncodeOptions{}, 0, 4096, true},
		{"effort none", llm.Request{Reasoning: &llm.Reasoning{Effort: "none"}}, EncodeOptions{}, 0, 4096, true},
		{"native keeps sampling", llm.Request{MaxTokens: intp(16000), Reasoning: &llm.Reasoning{Enabled: true, BudgetTokens: 10000}}, EncodeOptions{Native: true}, 10000, 16000, true},
		{"forced tool drops thinking", llm.Request{Reasoning: &llm.Reasoning{Enabled: true}, ToolChoice: &llm.ToolChoice{Mode: llm.ToolChoiceRequired},
			Tools: []llm.Tool{{Name: "f"}}}, EncodeOptions{}, 0, 4096, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.r.Temperature = &temp
			c.r.Messages = []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}}
			body, err := EncodeRequest(&c.r, "m", c.opts)
			if err != nil {
				t.Fatal(err)
			}
			var w Request
			if err := json.Unmarshal(body, &w); err != nil {
				t.Fatal(err)
			}
			budget := 0
			if w.Thinking != nil {
				budget = w.Thinking.BudgetTokens
			}
			if budget != c.budget || *w.MaxTokens != c.maxTokens || (w.Temperature != nil) != c.temp {
				t.Fatalf("budget %d max_tokens %d temperature %v", budget, *w.MaxTokens, w.Temperature)
			}
			if budget > 0 && budget >= *w.MaxTokens {
				t.Fatalf("budget %d not below max_tokens %d", budget, *w.MaxTokens)
			}
		})
	}
}

func TestEncodeRequestClampsTemperatureForForeignClients(t *testing.T) {
	hot := 1.6
	r := &llm.Request{Temperature: &hot, Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}}}
	for native, want := range map[bool]float64{false: 1, true: 1.6} {
		body, err := EncodeRequest(r, "m", EncodeOptions{Native: native})
		if err != nil {
			t.Fatal(err)
		}
		var w Request
		if err := json.Unmarshal(body, &w); err != nil {
			t.Fatal(err)
		}
		if *w.Temperature != want {
			t.Errorf("native=%v: temperature %v", native, *w.Temperature)
		}
	}
}

func TestEncodeRequestExtraOnlyForNativeClients(t *testing.T) {
	r := &llm.Request{Model: "m", Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "hi"}}}},
		Extra: map[string]json.RawMessage{"service_tier": json.RawMessage(`"auto"`), "model": json.RawMessage(`"evil"`)}}
	foreign, _ := EncodeRequest(r, "claude", EncodeOptions{})
	native, _ := EncodeRequest(r, "claude", EncodeOptions{Native: true})
	if bytes.Contains(foreign, []byte("service_tier")) {
		t.Errorf("extra passed to a foreign client's upstream: %s", foreign)
	}
	var m map[string]any
	if err := json.Unmarshal(native, &m); err != nil {
		t.Fatal(err)
	}
	if m["service_tier"] != "auto" || m["model"] != "claude" {
		t.Errorf("native: %s", native)
	}
}

type flushRecorder struct {
	bytes.Buffer
	flushes int
}

func (f *flushRecorder) Flush() { f.flushes++ }

func TestStreamEncoderRobustness(t *testing.T) {
	var w flushRecorder
	enc := NewStreamEncoder(&w)
	evs := []llm.Event{
		// no Start: message_start is synthesized
		{Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartText, Text: "whole text in the start"}},
		{Type: llm.EventPartStart, Index: 0, Part: &llm.Part{Type: llm.PartText}},  // repeated: ignored
		{Type: llm.EventPartStart, Index: 1, Part: &llm.Part{Type: llm.PartImage}}, // not streamable: skipped
		{Type: llm.EventDelta, Index: 1, Delta: llm.Delta{Text: "ignored"}},
		{Type: llm.EventPartStart, Index: 2, Part: &llm.Part{Type: llm.PartToolCall,
			ToolCall: &llm.ToolCall{ID: "call_1", Name: "f", Arguments: json.RawMessage(`{"a":1}`)}}}, // Gemini-style whole args
		{Type: llm.EventUsage, Usage: &llm.Usage{InputTokens: 7}},
		{Type: llm.EventStop, StopReason: llm.StopEnd, Usage: &llm.Usage{OutputTokens: 5}}, // parts 0 and 2 still open
	}
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(llm.Event{Type: llm.EventStop}); !errors.Is(err, errEnded) {
		t.Fatalf("event after stop: %v", err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	out := w.String()
	for _, want := range []string{
		"event: message_start\n",
		`"content_block":{"type":"text","text":""}`,
		`"delta":{"type":"text_delta","text":"whole text in the start"}`,
		`"index":1,"content_block":{"type":"tool_use","id":"call_1","name":"f","input":{}}`,
		`"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}`,
		`"delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if n := strings.Count(out, "event: content_block_start"); n != 2 {
		t.Errorf("%d content_block_start events", n)
	}
	if n := strings.Count(out, "event: content_block_stop"); n != 2 {
		t.Errorf("%d content_block_stop events", n)
	}
	if strings.Contains(out, "ignored") || strings.Contains(out, "event: error") {
		t.Errorf("unexpected output\n%s", out)
	}
	if w.flushes != strings.Count(out, "\n\n") {
		t.Errorf("%d flushes for %d events", w.flushes, strings.Count(out, "\n\n"))
	}
	// The client side sees a well-formed stream.
	if _, err := llm.Collect(NewStreamDecoder(io.NopCloser(strings.NewReader(out)))); err != nil {
		t.Fatal(err)
	}

	// Delta for a part never started is a bug of the producer.
	enc = NewStreamEncoder(io.Discard)
	if err := enc.Encode(llm.Event{Type: llm.EventDelta, Index: 3, Delta: llm.Delta{Text: "x"}}); err == nil {
		t.Error("delta without part_start accepted")
	}
}

func TestStreamEncoderErrorAndClose(t *testing.T) {
	var buf bytes.Buffer
	enc := NewStreamEncoder(&buf)
	_ = enc.Encode(llm.Event{Type: llm.EventStart, ID: "msg_1", Model: "m"})
	_ = enc.Encode(llm.Event{Type: llm.EventError, Err: &llm.Error{Status: 503, Type: llm.ErrOverloaded, Message: "Overloaded"}})
	_ = enc.Close()
	want := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	if !strings.HasSuffix(buf.String(), want) || strings.Count(buf.String(), "event: error") != 1 {
		t.Fatalf("%s", buf.String())
	}

	buf.Reset()
	enc = NewStreamEncoder(&buf)
	_ = enc.Encode(llm.Event{Type: llm.EventStart, ID: "msg_1", Model: "m"})
	_ = enc.Close() // broke off without Stop
	if !strings.Contains(buf.String(), "event: error\n") || strings.Contains(buf.String(), "message_stop") {
		t.Fatalf("%s", buf.String())
	}

	buf.Reset()
	enc = NewStreamEncoder(&buf)
	if err := enc.Close(); err != nil || buf.Len() != 0 {
		t.Fatalf("closing an unused encoder wrote %q (%v)", buf.String(), err)
	}
}

func TestStreamDecoderLineEndingsAndLeniency(t *testing.T) {
	lf := readFile(t, "testdata/streams/thinking.sse")
	want := decodeSSE(t, lf)
	for name, b := range map[string][]byte{
		"crlf":       bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n")),
		"cr":         bytes.ReplaceAll(lf, []byte("\n"), []byte("\r")),
		"no names":   regexpDropEventLines(lf),
		"no space":   bytes.ReplaceAll(lf, []byte("data: "), []byte("data:")),
		"no last nl": bytes.TrimRight(lf, "\n"),
	} {
		if got := decodeSSE(t, b); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: events differ:\n%s", name, formattest.JSONL(t, got))
		}
	}
}

func regexpDropEventLines(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "event:") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestStreamDecoderSkipsUnknownBlocksAndRejectsNonsense(t *testing.T) {
	const start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n"
	sse := start +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
		"event: future_event\ndata: {\"type\":\"future_event\"}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n" // block 1 never stopped: closed here
	r, err := llm.Collect(NewStreamDecoder(io.NopCloser(strings.NewReader(sse))))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Content) != 1 || r.Text() != "hi" || r.Usage.InputTokens != 3 || r.Usage.OutputTokens != 4 {
		t.Fatalf("%+v", r)
	}

	for name, body := range map[string]string{
		"bad json":        start + "event: content_block_start\ndata: {\"type\":\n\n",
		"wrong delta":     start + "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
		"unknown index":   start + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":4,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
		"started twice":   start + start,
		"empty":           "",
		"only a comment":  ": hello\n\n",
		"error first":     "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n",
		"unknown error":   "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"brand_new_error\",\"message\":\"?\"}}\n\n",
		"block restarted": start + "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\"}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\"}}\n\n",
	} {
		evs := decodeSSE(t, []byte(body))
		last := evs[len(evs)-1]
		if last.Type != llm.EventError || last.Err == nil || !last.Err.InStream {
			t.Errorf("%s: last event %+v", name, last)
		}
		if name == "error first" && (last.Err.Status != 429 || last.Err.Type != llm.ErrRateLimit) {
			t.Errorf("%s: %+v", name, last.Err)
		}
		if name == "unknown error" && (last.Err.Status != 500 || last.Err.Code != "brand_new_error") {
			t.Errorf("%s: %+v", name, last.Err)
		}
	}
}

type failingReader struct{ data io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.data.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

func (f *failingReader) Close() error { return nil }

func TestStreamDecoderReadError(t *testing.T) {
	s := NewStreamDecoder(&failingReader{strings.NewReader("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n")})
	evs := formattest.Events(t, s)
	last := evs[len(evs)-1]
	if len(evs) != 2 || last.Type != llm.EventError || last.Err.Status != 0 || !last.Err.Retryable() {
		t.Fatalf("%s", formattest.JSONL(t, evs))
	}
}

func TestDecodeError(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "17")
	e := DecodeError(429, h, []byte(`{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`))
	if e.Status != 429 || e.Type != llm.ErrRateLimit || e.RetryAfter != 17*time.Second || !strings.Contains(e.Message, "per-minute") {
		t.Errorf("%+v", e)
	}

	e = DecodeError(529, nil, []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	if e.Status != 529 || e.Type != llm.ErrOverloaded || !e.Retryable() {
		t.Errorf("%+v", e)
	}

	e = DecodeError(401, nil, []byte(`{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`))
	if e.Type != llm.ErrAuthentication || e.Retryable() {
		t.Errorf("%+v", e)
	}

	// A body without an error object (a proxy's page) is not echoed.
	e = DecodeError(502, nil, []byte("<html><body>502 Bad Gateway from 10.0.0.7</body></html>"))
	if e.Type != llm.ErrServer || e.Message != "Bad Gateway" {
		t.Errorf("%+v", e)
	}

	e = DecodeError(400, nil, []byte(`{"type":"error","error":{"type":"billing_error","message":"credit balance too low"}}`))
	if e.Status != 400 || e.Code != "billing_error" {
		t.Errorf("%+v", e)
	}

	now := time.Date(2025, 10, 14, 12, 0, 0, 0, time.UTC)
	rl := http.Header{}
	rl.Set("anthropic-ratelimit-requests-remaining", "12")
	rl.Set("anthropic-ratelimit-requests-reset", "2025-10-14T12:00:05Z")
	rl.Set("anthropic-ratelimit-input-tokens-remaining", "0")
	rl.Set("anthropic-ratelimit-input-tokens-reset", "2025-10-14T12:00:30Z")
	rl.Set("anthropic-ratelimit-output-tokens-remaining", "0")
	rl.Set("anthropic-ratelimit-output-tokens-reset", "2025-10-14T12:00:20Z")
	if d := retryAfter(rl, true, now); d != 30*time.Second {
		t.Errorf("exhausted limits: %v", d)
	}
	if d := retryAfter(rl, false, now); d != 0 {
		t.Errorf("reset headers read for a non-rate-limit error: %v", d)
	}
	rl.Set("anthropic-ratelimit-input-tokens-remaining", "5")
	rl.Set("anthropic-ratelimit-output-tokens-remaining", "5")
	if d := retryAfter(rl, true, now); d != 5*time.Second {
		t.Errorf("no exhausted limit: %v", d)
	}
	rl.Set("Retry-After", now.Add(time.Minute).Format(http.TimeFormat))
	if d := retryAfter(rl, true, now); d != time.Minute {
		t.Errorf("http-date retry-after: %v", d)
	}
}

func TestEncodeError(t *testing.T) {
	cases := []struct {
		e      *llm.Error
		status int
		body   string
	}{
		{&llm.Error{Status: 0, Type: llm.ErrServer, Message: "dial tcp: connection refused"}, 502,
			`{"type":"error","error":{"type":"api_error","message":"dial tcp: connection refused"}}`},
		{&llm.Error{Status: 503, Type: llm.ErrOverloaded, Message: "no target available"}, 529,
			`{"type":"error","error":{"type":"overloaded_error","message":"no target available"}}`},
		{&llm.Error{Status: 400, Type: llm.ErrInvalidRequest, Message: "max_tokens: Field required"}, 400,
			`{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`},
		{&llm.Error{Status: 404}, 404, `{"type":"error","error":{"type":"not_found_error","message":"Not Found"}}`},
	}
	for _, c := range cases {
		status, body := EncodeError(c.e)
		if status != c.status || string(body) != c.body {
			t.Errorf("%+v: %d %s", c.e, status, body)
		}
	}
}

func TestDecodeResponseFailures(t *testing.T) {
	for _, body := range []string{`not json`, `{"type":"completion"}`, `{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":"x"}]}`} {
		_, err := DecodeResponse([]byte(body))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 502 {
			t.Errorf("%s: %v", body, err)
		}
	}
	_, err := DecodeResponse([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 529 {
		t.Errorf("error body under 200: %v", err)
	}
}

func TestEncodeResponseHTTPShape(t *testing.T) {
	// A response mints an id when the upstream had none and keeps
	// usage fields present even when zero.
	out, err := EncodeResponse(&llm.Response{Content: []llm.Part{{Type: llm.PartText, Text: "x"}}, StopReason: llm.StopContentFilter})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m["id"].(string), "msg_") || m["stop_reason"] != "refusal" || m["stop_sequence"] != nil {
		t.Errorf("%s", out)
	}
	if _, ok := m["usage"].(map[string]any)["cache_read_input_tokens"]; !ok {
		t.Errorf("%s", out)
	}
	rec := httptest.NewRecorder()
	enc := NewStreamEncoder(rec)
	_ = enc.Encode(llm.Event{Type: llm.EventStart})
	if !rec.Flushed {
		t.Error("http.ResponseWriter not flushed")
	}
}
