package matrix

import (
	"io"

	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/llm"
)

func init() {
	meta := responses.Response{ID: "resp_matrix", CreatedAt: 1764072000, Model: "m"}
	formats = append(formats, format{
		name: "responses", keepsIDs: true, thinking: true, cacheRead: true,
		decodeRequest: func(b []byte) (*llm.Request, error) {
			in, err := responses.DecodeRequest(b)
			if err != nil {
				return nil, err
			}
			return in.Request, nil
		},
		encodeResponse: func(r *llm.Response) ([]byte, error) { return responses.EncodeResponse(meta, r) },
		newEncoder:     func(w io.Writer) encoder { return responses.NewStreamEncoder(w, meta) },
		encodeRequest: func(r *llm.Request, model string) ([]byte, error) {
			return responses.EncodeRequest(r, model, responses.EncodeOptions{})
		},
		decodeResponse: responses.DecodeResponse,
		newDecoder:     responses.NewStreamDecoder,
	})
}
