package ollama

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// FuzzDecodeRequest: DecodeRequest never panics, fails only with a 400
// llm.Error, every tool result it accepts answers a call of the
// conversation, and what it accepts encodes into a valid Ollama request
// (or a 400).
func FuzzDecodeRequest(f *testing.F) {
	formattest.AddSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"id":"call_0","function":{"name":"f","arguments":"{}"}},{"function":{"name":"f","arguments":null}}]},{"role":"tool","tool_call_id":"x","content":"r"}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x","images":["data:image/png;base64,aGk="]}],"options":{"num_predict":-2,"top_k":1e300},"think":"low"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		ids := map[string]bool{}
		for _, m := range req.Messages {
			for _, p := range m.Parts {
				if p.ToolCall != nil {
					if p.ToolCall.ID == "" || !json.Valid(p.ToolCall.Arguments) {
						t.Fatalf("tool call %+v", p.ToolCall)
					}
					ids[p.ToolCall.ID] = true
				}
				if p.ToolResult != nil && !ids[p.ToolResult.CallID] {
					t.Fatalf("result for unknown call %q", p.ToolResult.CallID)
				}
			}
		}
		for _, native := range []bool{false, true} {
			up, err := EncodeRequest(req, "m", EncodeOptions{Native: native})
			if err != nil {
				formattest.CheckBadRequest(t, "encode", err)
				continue
			}
			if !json.Valid(up) {
				t.Fatalf("invalid upstream JSON %s", up)
			}
		}
	})
}

// FuzzStreamDecoder: the decoder never panics and yields a well-formed
// canonical stream ending with Stop, or one that ends with a single
// in-stream Error. The client encoder turns it into NDJSON lines that are
// each valid JSON.
func FuzzStreamDecoder(f *testing.F) {
	formattest.AddSeeds(f, "streams/*.ndjson")
	f.Add([]byte(`{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":[1]}}]},"done":true,"done_reason":"length"}`))
	f.Add([]byte("{\"done\":true}\r\n{\"error\":\"late\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs := formattest.CheckStream(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(data))), 10*len(data)+10)
		var buf bytes.Buffer
		enc := NewStreamEncoder(&buf, "m", nil)
		formattest.Encode(t, enc, evs)
		for _, line := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
			if !json.Valid(line) {
				t.Fatalf("client line %q", line)
			}
		}
	})
}

// FuzzDecodeGenerateRequest: DecodeGenerateRequest never panics, fails
// only with a 400 llm.Error, and what it accepts is one user message that
// encodes into a valid Ollama request (or a 400).
func FuzzDecodeGenerateRequest(f *testing.F) {
	formattest.AddSeeds(f, "generate/*.json")
	f.Add([]byte(`{"model":"m","prompt":"","keep_alive":"0s","context":[1,2],"suffix":""}`))
	f.Add([]byte(`{"model":"m","prompt":"x","context":"abc","images":["data:image/png;base64,aGk="]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, err := DecodeGenerateRequest(body)
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		if len(req.Messages) != 1 || req.Messages[0].Role != "user" {
			t.Fatalf("messages %+v", req.Messages)
		}
		up, err := EncodeRequest(req, "m", EncodeOptions{Native: true})
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		if !json.Valid(up) {
			t.Fatalf("invalid upstream request %s", up)
		}
	})
}
