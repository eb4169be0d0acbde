package anthropic

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// FuzzDecodeRequest: DecodeRequest never panics, fails only with a 400
// llm.Error, and what it accepts can be encoded for any upstream without
// panicking (failing only with a 400).
func FuzzDecodeRequest(f *testing.F) {
	formattest.AddSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}]}`))
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":null}]}],"thinking":{"type":"adaptive"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(req, "m", EncodeOptions{Native: native}); err != nil {
				formattest.CheckBadRequest(t, "encode", err)
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
	formattest.AddSeeds(f, "streams/*.sse")
	f.Add([]byte("data: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"a\":1}}}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs := formattest.CheckStream(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(data))), 1<<16)
		var buf bytes.Buffer
		enc := NewStreamEncoder(&buf)
		formattest.Encode(t, enc, evs)
	})
}
