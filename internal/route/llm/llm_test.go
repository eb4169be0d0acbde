package llm

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func sample() *Response {
	return &Response{
		ID: "msg_1", Model: "m",
		Content: []Part{
			{Type: PartThinking, Text: "let me think", Signature: "sig=="},
			{Type: PartText, Text: "Checking both cities."},
			{Type: PartToolCall, ToolCall: &ToolCall{ID: "call_a", Name: "weather", Arguments: json.RawMessage(`{"city":"Paris"}`)}},
			{Type: PartToolCall, ToolCall: &ToolCall{ID: "call_b", Name: "weather", Arguments: json.RawMessage(`{"city":"Oslo"}`)}},
		},
		StopReason: StopToolUse,
		Usage:      Usage{InputTokens: 10, OutputTokens: 20, CacheReadTokens: 5, CacheWriteTokens: 2, ReasoningTokens: 7},
	}
}

func TestEventsCollectRoundTrip(t *testing.T) {
	want := sample()
	got, err := Collect(&SliceStream{Events: Events(want)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Fatalf("round trip:\n got %s\nwant %s", gj, wj)
	}
}

func TestAccumulatorFragmentsAndUsage(t *testing.T) {
	evs := []Event{
		{Type: EventStart, ID: "x", Usage: &Usage{InputTokens: 3}},
		{Type: EventPartStart, Index: 0, Part: &Part{Type: PartToolCall, ToolCall: &ToolCall{ID: "c", Name: "f"}}},
		{Type: EventDelta, Index: 0, Delta: Delta{Arguments: `{"a":`}},
		{Type: EventDelta, Index: 0, Delta: Delta{Arguments: `1}`}},
		{Type: EventPartStop, Index: 0},
		{Type: EventPartStart, Index: 1, Part: &Part{Type: PartToolCall, ToolCall: &ToolCall{ID: "d", Name: "g"}}},
		{Type: EventPartStop, Index: 1},
		{Type: EventUsage, Usage: &Usage{OutputTokens: 9}},
		{Type: EventStop, StopReason: StopToolUse},
	}
	r, err := Collect(&SliceStream{Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Content[0].ToolCall.Arguments) != `{"a":1}` || string(r.Content[1].ToolCall.Arguments) != `{}` {
		t.Fatalf("arguments: %s / %s", r.Content[0].ToolCall.Arguments, r.Content[1].ToolCall.Arguments)
	}
	if r.Usage.InputTokens != 3 || r.Usage.OutputTokens != 9 || r.Usage.PromptTokens() != 3 || r.Usage.TotalTokens() != 12 {
		t.Fatalf("usage %+v", r.Usage)
	}
	if len(r.ToolCalls()) != 2 {
		t.Fatalf("tool calls %+v", r.ToolCalls())
	}
}

func TestAccumulatorRejectsMalformedStreams(t *testing.T) {
	text := &Part{Type: PartText}
	cases := map[string][]Event{
		"no stop":            {{Type: EventStart}},
		"part left open":     {{Type: EventStart}, {Type: EventPartStart, Part: text}, {Type: EventStop}},
		"delta before start": {{Type: EventStart}, {Type: EventDelta, Index: 0, Delta: Delta{Text: "x"}}},
		"index gap":          {{Type: EventStart}, {Type: EventPartStart, Index: 1, Part: text}},
		"args on text":       {{Type: EventStart}, {Type: EventPartStart, Part: text}, {Type: EventDelta, Delta: Delta{Arguments: "{}"}}},
		"double start":       {{Type: EventStart}, {Type: EventStart}},
	}
	for name, evs := range cases {
		if _, err := Collect(&SliceStream{Events: evs}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	upstream := &Error{Status: 529, Type: ErrOverloaded, Message: "busy", InStream: true}
	_, err := Collect(&SliceStream{Events: []Event{{Type: EventStart}, {Type: EventError, Err: upstream}}})
	var e *Error
	if !errors.As(err, &e) || e != upstream {
		t.Fatalf("in-stream error not surfaced: %v", err)
	}
}

func TestRetryable(t *testing.T) {
	for status, want := range map[int]bool{0: true, 400: false, 401: false, 403: false, 404: false, 408: true, 429: true, 500: true, 502: true, 503: true, 529: true} {
		e := &Error{Status: status, Type: TypeForStatus(status)}
		if e.Retryable() != want {
			t.Errorf("status %d: retryable %v", status, !want)
		}
	}
	if !(&Error{Status: 200, Type: ErrOverloaded, InStream: true}).Retryable() {
		t.Error("an overloaded error inside a 200 stream must be retryable")
	}
}

func TestUsageEstimation(t *testing.T) {
	req := &Request{System: []Part{{Type: PartText, Text: "be brief"}}, Messages: []Message{{Role: RoleUser, Parts: []Part{{Type: PartText, Text: "hello there, how are you?"}}}}}
	r := &Response{Content: []Part{{Type: PartText, Text: "fine, thanks"}}, StopReason: StopEnd}
	FillUsage(req, r)
	if !r.Usage.Estimated || r.Usage.InputTokens == 0 || r.Usage.OutputTokens != 3 {
		t.Fatalf("estimate %+v", r.Usage)
	}
	// Real usage is never overwritten.
	r2 := &Response{Usage: Usage{InputTokens: 7, OutputTokens: 1}}
	FillUsage(req, r2)
	if r2.Usage.Estimated || r2.Usage.InputTokens != 7 {
		t.Fatalf("real usage replaced: %+v", r2.Usage)
	}
	// Streams: no usage upstream → estimated on Stop; usage upstream → kept.
	bare := Events(&Response{Content: []Part{{Type: PartText, Text: "fine, thanks"}}, StopReason: StopEnd})
	bare[0].Usage, bare[len(bare)-1].Usage = nil, nil
	got, err := Collect(EstimatingStream(req, &SliceStream{Events: bare}))
	if err != nil || !got.Usage.Estimated || got.Usage.OutputTokens != 3 {
		t.Fatalf("stream estimate %+v %v", got, err)
	}
	real := Events(&Response{Content: []Part{{Type: PartText, Text: "x"}}, StopReason: StopEnd, Usage: Usage{InputTokens: 5, OutputTokens: 2}})
	got, _ = Collect(EstimatingStream(req, &SliceStream{Events: real}))
	if got.Usage.Estimated || got.Usage.InputTokens != 5 {
		t.Fatalf("stream with real usage: %+v", got.Usage)
	}
}
