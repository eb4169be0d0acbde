package gemini

import (
	"bytes"
	"io"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// FuzzDecodeRequest: DecodeRequest never panics, fails only with a 400
// llm.Error carrying a message, and what it accepts can be encoded for a
// Gemini upstream (failing only with a 400) and counted.
func FuzzDecodeRequest(f *testing.F) {
	formattest.AddSeeds(f, "requests/*.json")
	f.Add([]byte(`{"contents":[{"role":"user","parts":[{"functionResponse":{"id":"x","name":"","response":[1]}}]}]}`))
	f.Add([]byte(`{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":"nope"}},{"thoughtSignature":"c2ln"}]}],"generation_config":{"thinking_config":{"thinking_budget":-5}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest("m", body, false)
		if err != nil {
			formattest.CheckDecodeError(t, err)
			return
		}
		for _, native := range []bool{false, true} {
			if _, err := EncodeRequest(req, EncodeOptions{Native: native}); err != nil {
				formattest.CheckBadRequest(t, "encode", err)
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
	formattest.AddSeeds(f, "streams/*.sse")
	f.Add([]byte("data: {\"candidates\":[{\"finishReason\":\"STOP\"}]}\n\n"))
	f.Add([]byte("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\",\"thoughtSignature\":\"x\"},{\"text\":\"b\"},{\"functionCall\":{\"name\":\"f\"}}]},\"finishReason\":\"STOP\"}]}\r\rdata: {}\r\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs := formattest.CheckStream(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(data))), 1<<16)
		for _, enc := range []*StreamEncoder{NewStreamEncoder(io.Discard), NewArrayStreamEncoder(io.Discard)} {
			formattest.Encode(t, enc, evs)
		}
	})
}
