package anthropic

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
// llm.Error, and what it accepts can be encoded for any upstream without
// panicking (failing only with a 400).
func FuzzDecodeRequest(f *testing.F) {
	addSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}]}`))
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":null}]}],"thinking":{"type":"adaptive"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusBadRequest || le.Type != llm.ErrInvalidRequest || le.Message == "" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(req, "m", EncodeOptions{Native: native}); err != nil {
				var le *llm.Error
				if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
					t.Fatalf("encode: %#v", err)
				}
			}
		}
		if _, err := encodeCountTokens(req, "m", EncodeOptions{}); err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
				t.Fatalf("count tokens: %#v", err)
			}
		}
	})
}

// FuzzStreamDecoder: the decoder never panics and yields a well-formed
// canonical stream (the accumulator accepts every event and the stream
// ends with Stop) or one that ends with a single Error event. The
// encoder turns whatever it yields into SSE without failing.
func FuzzStreamDecoder(f *testing.F) {
	addSeeds(f, "streams/*.sse")
	f.Add([]byte("data: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"a\":1}}}\r\n\r\n"))
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
		enc := NewStreamEncoder(&buf)
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
