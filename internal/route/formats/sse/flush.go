package sse

import (
	"io"
	"net/http"
)

// Flusher returns what pushes w's buffered bytes to the client after each
// streamed event (SSE or NDJSON): w's own Flush, or, for a response
// writer wrapped by middleware that does not flush itself, the Flush
// http.ResponseController reaches through Unwrap. It is a no-op when w is
// no response writer.
func Flusher(w io.Writer) func() {
	if f, ok := w.(http.Flusher); ok {
		return f.Flush
	}
	rw, ok := w.(http.ResponseWriter)
	if !ok {
		return func() {}
	}
	rc := http.NewResponseController(rw)
	return func() { _ = rc.Flush() }
}
