package matrix

import (
	"io"

	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/llm"
)

func init() {
	formats = append(formats, format{
		name: "anthropic", keepsIDs: true, thinking: true, cacheRead: true,
		decodeRequest:  anthropic.DecodeRequest,
		encodeResponse: anthropic.EncodeResponse,
		newEncoder:     func(w io.Writer) encoder { return anthropic.NewStreamEncoder(w) },
		encodeRequest: func(r *llm.Request, model string) ([]byte, error) {
			return anthropic.EncodeRequest(r, model, anthropic.EncodeOptions{})
		},
		decodeResponse: anthropic.DecodeResponse,
		newDecoder:     anthropic.NewStreamDecoder,
	})
}
