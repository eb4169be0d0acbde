package matrix

import (
	"io"
	"time"

	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/llm"
)

func init() {
	now := func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }
	formats = append(formats, format{
		// Ollama has no thinking signatures and no cache counts.
		name: "ollama", keepsIDs: true, thinking: false, cacheRead: false,
		decodeRequest:  ollama.DecodeRequest,
		encodeResponse: ollama.EncodeResponse,
		newEncoder:     func(w io.Writer) encoder { return ollama.NewStreamEncoder(w, "m", now) },
		encodeRequest: func(r *llm.Request, model string) ([]byte, error) {
			return ollama.EncodeRequest(r, model, ollama.EncodeOptions{})
		},
		decodeResponse: ollama.DecodeResponse,
		newDecoder:     ollama.NewStreamDecoder,
	})
}
