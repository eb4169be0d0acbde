package pipeline

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// streamFailure is the error of a stream that failed after its first
// byte, as its outcome records it.
func streamFailure(err error) *llm.Error {
	e := &llm.Error{Status: statusBadGateway, Type: ErrStreamFailed, Message: err.Error()}
	var le *llm.Error
	if errors.As(err, &le) {
		e.Provider, e.Message = le.Provider, le.Message
		if le.Type != "" {
			e.Message = string(le.Type) + ": " + le.Message
		}
	}
	return e
}

// errStreamUnfinished ends a stream whose upstream stopped sending before
// its stop event.
var errStreamUnfinished = &llm.Error{Status: statusBadGateway, Type: llm.ErrServer, Message: "upstream stream ended without its stop event"}

// observed watches a stream on its way to the client: it keeps the final
// usage, counts what was delivered, folds the events into a response when
// the answer is to be kept (cache, idempotency), and reports the outcome
// once, when the stream ends or is closed.
type observed struct {
	llm.Stream
	acc    *llm.Accumulator
	keep   bool
	start  time.Time
	now    func() time.Time
	out    Outcome
	ctx    context.Context // the request's: done when the client left
	input  int             // the request's estimated input tokens
	finish func(Outcome, *llm.Response)

	once   sync.Once
	broken bool // an event did not fold or the stream failed
	ended  bool // a Stop event arrived
	output int  // estimated tokens of the deltas passed on
}

func (o *observed) Next() (llm.Event, error) {
	ev, err := o.Stream.Next()
	switch {
	case errors.Is(err, io.EOF) && !o.ended && o.ctx.Err() == nil:
		o.end(errStreamUnfinished)
	case errors.Is(err, io.EOF):
		o.end(nil)
	case err != nil:
		o.end(err)
	default:
		if ev.Usage != nil {
			o.out.Usage = *ev.Usage
		}
		switch {
		case ev.Type == llm.EventDelta:
			o.output += llm.EstimateTokens(ev.Delta.Text) + llm.EstimateTokens(ev.Delta.Arguments)
		case ev.Type == llm.EventStart && ev.Part != nil: // a part may start with content (whole tool calls)
			o.output += llm.EstimateTokens(ev.Part.Text)
			if tc := ev.Part.ToolCall; tc != nil {
				o.output += llm.EstimateTokens(tc.Name) + (len(tc.Arguments)+3)/4
			}
		}
		if o.keep && !o.broken {
			if o.acc.Add(ev) != nil {
				o.broken = true
			}
		}
		switch ev.Type {
		case llm.EventStop:
			o.ended = true
		case llm.EventError:
			o.end(ev.Err)
		}
	}
	return ev, err
}

func (o *observed) Close() error {
	if !o.ended && o.ctx.Err() != nil {
		o.drain()
	}
	err := o.Stream.Close()
	if !o.ended {
		o.end(context.Canceled)
	} else {
		o.end(nil)
	}
	return err
}

// maxDrain bounds the events drain reads.
const maxDrain = 4096

// drain reads on, once the client has left, what the upstream had
// already sent: a stream whose end was received (the client left while
// its last bytes were being written) completed, and is charged its real
// usage rather than as cut short. The client's leaving cancelled the
// upstream call, so reading returns what had arrived and then fails.
func (o *observed) drain() {
	for range maxDrain {
		ev, err := o.Next()
		if err != nil || o.ended || ev.Type == llm.EventError {
			return
		}
	}
}

// end reports the outcome once: a stream that failed or was cut short
// reports what was delivered and its error — 499 when the client left
// (or stopped reading), else 502 with ErrStreamFailed —; one that stopped
// normally reports success and, when kept, the folded response.
func (o *observed) end(err error) {
	o.once.Do(func() {
		out := o.out
		out.Latency = o.now().Sub(o.start)
		if err != nil || !o.ended {
			if err == nil || o.ctx.Err() != nil || errors.Is(err, context.Canceled) {
				out.Status, out.Err = StatusClientClosed, clientClosed() // the client left
			} else {
				out.Status, out.Err = statusBadGateway, streamFailure(err)
			}
			out.CutShort, out.Usage = true, delivered(out.Usage, o.input, o.output)
			o.finish(out, nil)
			return
		}
		var resp *llm.Response
		if o.keep && !o.broken {
			if r, ferr := o.acc.Response(); ferr == nil {
				resp = r
			}
		}
		o.finish(out, resp)
	})
}

// delivered is the usage of a stream cut short: what the upstream
// reported so far, with the input estimated from the request when it
// reported none and the output estimated from the deltas passed on when
// it reported less.
func delivered(u llm.Usage, input, output int) llm.Usage {
	if u.InputTokens == 0 && u.CacheReadTokens == 0 && u.CacheWriteTokens == 0 {
		u.InputTokens, u.Estimated = input, true
	}
	if u.OutputTokens < output {
		u.OutputTokens, u.Estimated = output, true
	}
	return u
}
