package openai

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

// wrapped is a middleware response writer that does not flush itself but
// lets http.ResponseController reach the one it wraps.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Each chunk reaches the client at once, also through middleware.
func TestStreamEncoderFlushesThroughWrappers(t *testing.T) {
	rec := httptest.NewRecorder()
	enc := NewStreamEncoder(wrapped{rec}, false, 1)
	if err := enc.Encode(llm.Event{Type: llm.EventStart, ID: "x", Model: "m"}); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed {
		t.Fatal("first chunk not flushed")
	}
}
