package matrix

import (
	"io"

	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/llm"
)

func init() {
	formats = append(formats, format{
		// Gemini names no model in its body (it is in the URL) and carries
		// signatures only as base64 bytes, so thinking is compared as text.
		name: "gemini", keepsIDs: true, thinking: false, cacheRead: true,
		decodeRequest:  func(b []byte) (*llm.Request, error) { return gemini.DecodeRequest("m", b, false) },
		encodeResponse: gemini.EncodeResponse,
		newEncoder:     func(w io.Writer) encoder { return gemini.NewStreamEncoder(w) },
		encodeRequest: func(r *llm.Request, _ string) ([]byte, error) {
			return gemini.EncodeRequest(r, gemini.EncodeOptions{})
		},
		decodeResponse: gemini.DecodeResponse,
		newDecoder:     gemini.NewStreamDecoder,
	})
}
