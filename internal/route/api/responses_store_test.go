package api

import (
	"reflect"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

// A stored conversation comes back as it went in, tool-call arguments
// byte for byte: spacing kept (the upstream sees the same prompt next
// turn) and arguments that are not JSON kept too.
func TestStoredConversationRoundTrip(t *testing.T) {
	in := Conversation{System: []llm.Part{{Type: llm.PartText, Text: "be brief"}}, Response: []byte(`{"id":"resp_1"}`),
		Messages: []llm.Message{
			{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "weather?"}}},
			{Role: llm.RoleAssistant, Parts: []llm.Part{
				{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "c1", Name: "w", Arguments: []byte(`{"city": "Oslo",  "u": "<c>"}`)}},
				{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "c2", Name: "w", Arguments: []byte(`{"city": "Par`)}},
				{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: "c3", Name: "w"}},
			}},
		}}
	raw, err := encodeConversation(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeConversation(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%+v\n%+v", in.Messages[1].Parts, out.Messages[1].Parts)
	}
	if string(in.Messages[1].Parts[0].ToolCall.Arguments) != `{"city": "Oslo",  "u": "<c>"}` {
		t.Fatal("encoding changed the conversation it was given")
	}
}
