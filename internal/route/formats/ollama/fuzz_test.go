package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

func addSeeds(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecodeRequest: DecodeRequest never panics, fails only with a 400
// llm.Error, every tool result it accepts answers a call of the
// conversation, and what it accepts encodes into a valid Ollama request
// (or a 400).
func FuzzDecodeRequest(f *testing.F) {
	addSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"id":"call_0","function":{"name":"f","arguments":"{}"}},{"function":{"name":"f","arguments":null}}]},{"role":"tool","tool_call_id":"x","content":"r"}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"x","images":["data:image/png;base64,aGk="]}],"options":{"num_predict":-2,"top_k":1e300},"think":"low"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusBadRequest || le.Type != llm.ErrInvalidRequest || le.Message == "" {
				t.Fatalf("error %#v", err)
			}
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
				var le *llm.Error
				if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
					t.Fatalf("encode: %#v", err)
				}
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
	addSeeds(f, "streams/*.ndjson")
	f.Add([]byte(`{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":[1]}}]},"done":true,"done_reason":"length"}`))
	f.Add([]byte("{\"done\":true}\r\n{\"error\":\"late\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewStreamDecoder(io.NopCloser(bytes.NewReader(data)))
		defer s.Close()
		acc := llm.NewAccumulator()
		var evs []llm.Event
		for {
			ev, err := s.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(evs) > 0 {
				if last := evs[len(evs)-1].Type; last == llm.EventError || last == llm.EventStop {
					t.Fatalf("event %+v after %s", ev, last)
				}
			}
			if len(evs) > 10*len(data)+10 {
				t.Fatal("decoder does not terminate")
			}
			evs = append(evs, ev)
			if ev.Type == llm.EventError {
				if ev.Err == nil || !ev.Err.InStream {
					t.Fatalf("error event %+v", ev)
				}
				continue
			}
			if err := acc.Add(ev); err != nil {
				t.Fatalf("malformed canonical event %+v: %v", ev, err)
			}
		}
		if len(evs) == 0 {
			t.Fatal("no events: a stream must end with Stop or Error")
		}
		if evs[len(evs)-1].Type == llm.EventStop {
			if _, err := acc.Response(); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		enc := NewStreamEncoder(&buf, "m", nil)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				t.Fatalf("encode %+v: %v", ev, err)
			}
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
			if !json.Valid(line) {
				t.Fatalf("client line %q", line)
			}
		}
	})
}
