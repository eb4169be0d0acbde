package responses

import (
	"bytes"
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
// llm.Error, and what it accepts can be encoded for a Responses upstream
// (failing only with a 400) and answered without panicking.
func FuzzDecodeRequest(f *testing.F) {
	addSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","input":[{"type":"reasoning","summary":[{"type":"summary_text","text":"x"}],"encrypted_content":"e"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"data:image/png;base64,AA=="}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := DecodeRequest(body)
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusBadRequest || le.Type != llm.ErrInvalidRequest || le.Message == "" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(in.Request, "m", EncodeOptions{Native: native}); err != nil {
				var le *llm.Error
				if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
					t.Fatalf("encode: %#v", err)
				}
			}
		}
		meta := in.Echo
		meta.ID = "resp_f"
		if _, err := EncodeResponse(meta, &llm.Response{Content: []llm.Part{{Type: llm.PartText, Text: "x"}}}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzStreamDecoder: the decoder never panics and yields a well-formed
// canonical stream (the accumulator accepts every event and the stream
// ends with Stop) or one that ends with a single Error event. The
// encoder turns whatever it yields into SSE without failing.
func FuzzStreamDecoder(f *testing.F) {
	addSeeds(f, "*.sse")
	f.Add([]byte("data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"reasoning\",\"summary\":[]}]}}\n\n"))
	f.Add([]byte("data: {\"type\":\"response.output_text.delta\",\"output_index\":3,\"delta\":\"x\"}\r\n\r\n"))
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
		enc := NewStreamEncoder(&buf, Response{ID: "resp_f"})
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				t.Fatalf("encode %+v: %v", ev, err)
			}
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
