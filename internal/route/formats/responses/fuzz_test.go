package responses

import (
	"bytes"
	"io"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// FuzzDecodeRequest: DecodeRequest never panics, fails only with a 400
// llm.Error, and what it accepts can be encoded for a Responses upstream
// (failing only with a 400) and answered without panicking.
func FuzzDecodeRequest(f *testing.F) {
	formattest.AddSeeds(f, "requests/*.json")
	f.Add([]byte(`{"model":"m","input":[{"type":"reasoning","summary":[{"type":"summary_text","text":"x"}],"encrypted_content":"e"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"data:image/png;base64,AA=="}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := DecodeRequest(body)
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(in.Request, "m", EncodeOptions{Native: native}); err != nil {
				formattest.CheckBadRequest(t, "encode", err)
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
	formattest.AddSeeds(f, "*.sse")
	f.Add([]byte("data: {\"type\":\"response.completed\",\"response\":{\"output\":[{\"type\":\"reasoning\",\"summary\":[]}]}}\n\n"))
	f.Add([]byte("data: {\"type\":\"response.output_text.delta\",\"output_index\":3,\"delta\":\"x\"}\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs := formattest.CheckStream(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(data))), 1<<16)
		var buf bytes.Buffer
		enc := NewStreamEncoder(&buf, Response{ID: "resp_f"})
		formattest.Encode(t, enc, evs)
	})
}
