package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/progress"
	"github.com/omniedge/omni/internal/route/router"
)

// X-OmniRoute-Progress: a streaming SSE request that sends it ("true" or
// "1") gets the response header "enabled" and progress events in its
// stream, as SSE comment lines that every SSE parser skips:
//
//	: omniroute-progress {"stage":"accepted","elapsed_ms":0}
//
// Stages: accepted (at once, before the upstream answers), attempt (each
// upstream attempt: target and number), retry (an attempt failed: its
// HTTP status only), waiting (a heartbeat while no upstream byte has
// arrived), first_token (the first content) and done (before the final
// frame, with the usage when known). Nothing else reaches the line: no
// prompt, key or upstream error body. Non-streaming requests, NDJSON and
// JSON-array streams and requests without the header are untouched.
//
// With progress on, the 200 and its headers are sent before the
// pipeline runs, so a failure before the first token (every target
// failed, a limit refused) arrives in-stream, in the dialect's error
// event, as a failure after it does.

// HeaderProgress is the request and response header of progress events.
const HeaderProgress = "X-OmniRoute-Progress"

var canonicalProgress = http.CanonicalHeaderKey(HeaderProgress)

// DefaultProgressInterval is the heartbeat period of the waiting stage.
const DefaultProgressInterval = progress.Interval

var _ router.AttemptObserver = (*progress.Tracker)(nil)

// startProgress commits the response as an SSE stream with the progress
// header and starts the request's progress (route/progress).
func (s *Server) startProgress(ctx context.Context, w http.ResponseWriter) *progress.Tracker {
	w.Header()[canonicalProgress] = []string{"enabled"}
	streamHeaders(w, "text/event-stream")
	return progress.Start(ctx, w, sse.Flusher(w), s.clock.Now, s.progressEvery, s.progressTicker)
}

// wantsProgress reports whether r asks for progress events and its
// answer is an SSE stream (req streams in a dialect that streams SSE).
func wantsProgress(ctx context.Context, r *http.Request, req *llm.Request) bool {
	v := strings.TrimSpace(headerValue(r.Header, canonicalProgress))
	if !req.Stream || !(strings.EqualFold(v, "true") || v == "1") {
		return false
	}
	switch llm.DialectOf(ctx) {
	case llm.DialectOllama:
		return false // NDJSON
	case llm.DialectGemini:
		return r.URL.Query().Get("alt") == "sse" // else one JSON array
	}
	return true
}

// progressOn reports whether the response on w already started with
// progress events (its SSE headers are sent).
func progressOn(w http.ResponseWriter) bool {
	return headerValue(w.Header(), canonicalProgress) == "enabled"
}

// errStream yields one error: a failure of the pipeline after the
// progress stream started, which the dialect's encoder sends in-stream.
type errStream struct{ err *llm.Error }

func (s errStream) Next() (llm.Event, error) { return llm.Event{}, s.err }
func (errStream) Close() error               { return nil }

// inStream is the error a progress stream carries for err.
func (s *Server) inStream(r *http.Request, err error) *llm.Error {
	le := *s.toLLMError(r, err)
	le.InStream = true
	le.Attempts = nil
	return &le
}
