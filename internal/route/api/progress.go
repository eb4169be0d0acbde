package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
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
const DefaultProgressInterval = 5 * time.Second

// maxWaiting caps the waiting lines of one request (an hour at the
// default period); the heartbeat also stops when the upstream answers,
// the client goes or the request ends.
const maxWaiting = 720

// tickerFunc starts a ticker of period d and returns its channel and its
// stop function (time.NewTicker in production; tests inject their own).
type tickerFunc func(d time.Duration) (<-chan time.Time, func())

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
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

// progress writes the progress lines of one request. Lines are written
// as they happen, one at a time; nothing is queued.
type progress struct {
	w     http.ResponseWriter
	flush func()
	now   func() time.Time
	start time.Time

	mu       sync.Mutex
	attempts int  // attempts told so far
	sealed   bool // the pipeline returned: attempt news no longer written
	broken   bool // a write failed: the client is gone

	quit chan struct{} // closed to stop the heartbeat
	beat chan struct{} // closed when the heartbeat has stopped

	first bool      // first_token written
	usage llm.Usage // from the stream's events
	used  bool
}

// startProgress commits the response as an SSE stream with the progress
// header, writes the accepted stage and starts the heartbeat, which
// stops at stopWaiting or when ctx ends.
func (s *Server) startProgress(ctx context.Context, w http.ResponseWriter) *progress {
	w.Header()[canonicalProgress] = []string{"enabled"}
	streamHeaders(w, "text/event-stream")
	p := &progress{w: w, flush: sse.Flusher(w), now: s.clock.Now, start: s.clock.Now(),
		quit: make(chan struct{}), beat: make(chan struct{})}
	p.write(progressLine{Stage: "accepted"})
	every, tick := s.progressEvery, s.progressTicker
	if every <= 0 {
		every = DefaultProgressInterval
	}
	if tick == nil {
		tick = realTicker
	}
	c, stop := tick(every)
	go func() {
		defer close(p.beat)
		defer stop()
		for n := 0; n < maxWaiting; n++ {
			select {
			case <-c:
				p.write(progressLine{Stage: "waiting"})
			case <-p.quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// stopWaiting ends the heartbeat and the attempt news, and returns once
// the heartbeat goroutine is gone: from then on only the handler's
// goroutine writes to the response.
func (p *progress) stopWaiting() {
	close(p.quit)
	<-p.beat
	p.mu.Lock()
	p.sealed = true
	p.mu.Unlock()
}

// progressLine is the JSON of one line.
type progressLine struct {
	Stage     string     `json:"stage"`
	ElapsedMS int64      `json:"elapsed_ms"`
	Target    string     `json:"target,omitempty"`
	Attempt   int        `json:"attempt,omitempty"`
	Status    int        `json:"status,omitempty"`
	Usage     *llm.Usage `json:"usage,omitempty"`
}

var progressPrefix = []byte(": omniroute-progress ")

// write sends one line with its elapsed time set.
func (p *progress) write(l progressLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(l)
}

func (p *progress) writeLocked(l progressLine) {
	if p.broken {
		return
	}
	l.ElapsedMS = p.now().Sub(p.start).Milliseconds()
	js, err := json.Marshal(l)
	if err != nil {
		return
	}
	line := make([]byte, 0, len(progressPrefix)+len(js)+2)
	line = append(append(append(line, progressPrefix...), js...), '\n', '\n')
	if _, err := p.w.Write(line); err != nil {
		p.broken = true
		return
	}
	p.flush()
}

// Attempting implements router.AttemptObserver.
func (p *progress) Attempting(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed {
		return
	}
	p.attempts++
	p.writeLocked(progressLine{Stage: "attempt", Target: target, Attempt: p.attempts})
}

// AttemptFailed implements router.AttemptObserver: the status only.
func (p *progress) AttemptFailed(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed {
		return
	}
	p.writeLocked(progressLine{Stage: "retry", Attempt: p.attempts, Status: status})
}

var _ router.AttemptObserver = (*progress)(nil)

// progressStream passes a stream on, writing first_token before its first
// content and done before its stop event. It runs on the handler's
// goroutine, between the encoder's writes.
type progressStream struct {
	llm.Stream
	p *progress
}

func (s *progressStream) Next() (llm.Event, error) {
	ev, err := s.Stream.Next()
	if err != nil {
		return ev, err
	}
	p := s.p
	if ev.Usage != nil {
		p.usage, p.used = llm.MergeUsage(p.usage, *ev.Usage), true
	}
	switch ev.Type {
	case llm.EventDelta, llm.EventPartStart:
		if !p.first {
			p.first = true
			p.write(progressLine{Stage: "first_token"})
		}
	case llm.EventStop:
		l := progressLine{Stage: "done"}
		if p.used {
			u := p.usage
			l.Usage = &u
		}
		p.write(l)
	}
	return ev, nil
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
