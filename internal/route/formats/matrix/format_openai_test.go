package matrix

import (
	"io"

	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
)

func init() {
	formats = append(formats, format{
		name: "openai", keepsIDs: true, thinking: false, cacheRead: true,
		decodeRequest:  openai.DecodeRequest,
		encodeResponse: openai.EncodeResponse,
		newEncoder:     func(w io.Writer) encoder { return openai.NewStreamEncoder(w, true, 1764072000) },
		encodeRequest: func(r *llm.Request, model string) ([]byte, error) {
			return openai.EncodeRequest(r, model, openai.EncodeOptions{})
		},
		decodeResponse: openai.DecodeResponse,
		newDecoder:     openai.NewStreamDecoder,
	})
}
