// Package progress writes the X-OmniRoute-Progress events of one
// streaming request: SSE comment lines (": omniroute-progress {…}") that
// every SSE parser skips, for the stages accepted, attempt, retry,
// waiting (a bounded heartbeat), first_token and done. It knows nothing
// of dialects; route/api decides which requests get them.
package progress

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// Interval is the default heartbeat period of the waiting stage.
const Interval = 5 * time.Second

// MaxWaiting caps the waiting lines of one request (an hour at the
// default period); the heartbeat also stops when the upstream answers,
// the client goes or the request ends.
const MaxWaiting = 720

// TickerFunc starts a ticker of period d and returns its channel and its
// stop function (time.NewTicker in production; tests inject their own).
type TickerFunc func(d time.Duration) (<-chan time.Time, func())

func realTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Tracker writes the progress lines of one request. Lines are written
// as they happen, one at a time; nothing is queued.
type Tracker struct {
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

// Start writes the accepted stage on w, whose SSE headers the caller has
// set, and starts the heartbeat: a waiting line every period (Interval
// when 0, at most MaxWaiting), until Stop or the end of ctx. flush pushes
// what was written to the client; tick is nil for time.NewTicker.
func Start(ctx context.Context, w http.ResponseWriter, flush func(), now func() time.Time, every time.Duration, tick TickerFunc) *Tracker {
	p := &Tracker{w: w, flush: flush, now: now, start: now(),
		quit: make(chan struct{}), beat: make(chan struct{})}
	p.write(line{Stage: "accepted"})
	if every <= 0 {
		every = Interval
	}
	if tick == nil {
		tick = realTicker
	}
	c, stop := tick(every)
	go func() {
		defer close(p.beat)
		defer stop()
		for n := 0; n < MaxWaiting; n++ {
			select {
			case <-c:
				p.write(line{Stage: "waiting"})
			case <-p.quit:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// Stop ends the heartbeat and the attempt news, and returns once
// the heartbeat goroutine is gone: from then on only the handler's
// goroutine writes to the response.
func (p *Tracker) Stop() {
	close(p.quit)
	<-p.beat
	p.mu.Lock()
	p.sealed = true
	p.mu.Unlock()
}

// line is the JSON of one line.
type line struct {
	Stage     string     `json:"stage"`
	ElapsedMS int64      `json:"elapsed_ms"`
	Target    string     `json:"target,omitempty"`
	Attempt   int        `json:"attempt,omitempty"`
	Status    int        `json:"status,omitempty"`
	Usage     *llm.Usage `json:"usage,omitempty"`
}

var prefix = []byte(": omniroute-progress ")

// write sends one line with its elapsed time set.
func (p *Tracker) write(l line) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writeLocked(l)
}

func (p *Tracker) writeLocked(l line) {
	if p.broken {
		return
	}
	l.ElapsedMS = p.now().Sub(p.start).Milliseconds()
	js, err := json.Marshal(l)
	if err != nil {
		return
	}
	line := make([]byte, 0, len(prefix)+len(js)+2)
	line = append(append(append(line, prefix...), js...), '\n', '\n')
	if _, err := p.w.Write(line); err != nil {
		p.broken = true
		return
	}
	p.flush()
}

// Attempting reports an upstream attempt (router.AttemptObserver).
func (p *Tracker) Attempting(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed {
		return
	}
	p.attempts++
	p.writeLocked(line{Stage: "attempt", Target: target, Attempt: p.attempts})
}

// AttemptFailed reports a failed attempt, its status only
// (router.AttemptObserver).
func (p *Tracker) AttemptFailed(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sealed {
		return
	}
	p.writeLocked(line{Stage: "retry", Attempt: p.attempts, Status: status})
}

// stream passes a stream on, writing first_token before its first
// content and done before its stop event. It runs on the handler's
// goroutine, between the encoder's writes.
type stream struct {
	llm.Stream
	p *Tracker
}

func (s *stream) Next() (llm.Event, error) {
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
			p.write(line{Stage: "first_token"})
		}
	case llm.EventStop:
		l := line{Stage: "done"}
		if p.used {
			u := p.usage
			l.Usage = &u
		}
		p.write(l)
	}
	return ev, nil
}

// Wrap returns s writing first_token before its first content and done
// (with the usage seen) before its stop event, on the goroutine that
// reads it; call it after Stop.
func (p *Tracker) Wrap(s llm.Stream) llm.Stream { return &stream{Stream: s, p: p} }
