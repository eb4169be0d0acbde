package gemini

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
// llm.Error carrying a message, and what it accepts can be encoded for a
// Gemini upstream (failing only with a 400) and counted.
func FuzzDecodeRequest(f *testing.F) {
	addSeeds(f, "requests/*.json")
	f.Add([]byte(`{"contents":[{"role":"user","parts":[{"functionResponse":{"id":"x","name":"","response":[1]}}]}]}`))
	f.Add([]byte(`{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":"nope"}},{"thoughtSignature":"c2ln"}]}],"generation_config":{"thinking_config":{"thinking_budget":-5}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest("m", body, false)
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusBadRequest || le.Type != llm.ErrInvalidRequest || le.Message == "" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(req, EncodeOptions{Native: native}); err != nil {
				var le *llm.Error
				if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
					t.Fatalf("encode: %#v", err)
				}
			}
		}
		if _, err := EncodeResponse(&llm.Response{Content: req.System}); err != nil {
			t.Fatal(err)
		}
		_ = llm.EstimateInput(req)
	})
}

// FuzzStreamDecoder: the decoder never panics and yields a well-formed
// canonical stream ending with Stop, or one ending with a single Error
// event; both encoders turn whatever it yields into output without
// failing.
func FuzzStreamDecoder(f *testing.F) {
	addSeeds(f, "streams/*.sse")
	f.Add([]byte("data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n"))
	f.Add([]byte("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\",\"thoughtSignature\":\"x\"},{\"text\":\"b\"},{\"functionCall\":{\"name\":\"f\"}}]},\"finishReason\":\"STOP\"}]}\r\rdata: {}\r\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewStreamDecoder(io.NopCloser(bytes.NewReader(data)))
		defer s.Close()
		acc := llm.NewAccumulator()
		var evs []llm.Event
		for i := 0; ; i++ {
			if i > 1<<16 {
				t.Fatal("decoder did not terminate")
			}
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
		for _, enc := range []*StreamEncoder{NewStreamEncoder(io.Discard), NewArrayStreamEncoder(io.Discard)} {
			for _, ev := range evs {
				if err := enc.Encode(ev); err != nil {
					t.Fatalf("encode %+v: %v", ev, err)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
