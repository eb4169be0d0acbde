package llm

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// EventType discriminates Event.
type EventType string

// Stream events, in the order a well-formed stream emits them:
//
//	Start (PartStart Delta* PartStop)* Usage* Stop
//
// Error may end a stream at any point instead of Stop.
const (
	EventStart     EventType = "start"      // ID, Model; Usage may hold input tokens
	EventPartStart EventType = "part_start" // Index, Part (type; tool call id and name)
	EventDelta     EventType = "delta"      // Index, Delta
	EventPartStop  EventType = "part_stop"  // Index
	EventUsage     EventType = "usage"      // Usage: cumulative, replaces earlier values
	EventStop      EventType = "stop"       // StopReason, StopSequence, Usage (final)
	EventError     EventType = "error"      // Err
)

// Delta is an increment of the part at Event.Index.
type Delta struct {
	Text      string `json:"text,omitempty"`      // text or thinking text
	Arguments string `json:"arguments,omitempty"` // a fragment of tool-call arguments JSON
	Signature string `json:"signature,omitempty"` // thinking signature (appended)
}

// Event is one step of a canonical stream.
type Event struct {
	Type         EventType  `json:"type"`
	ID           string     `json:"id,omitempty"`
	Model        string     `json:"model,omitempty"`
	Index        int        `json:"index"`
	Part         *Part      `json:"part,omitempty"`
	Delta        Delta      `json:"delta,omitzero"`
	Usage        *Usage     `json:"usage,omitempty"`
	StopReason   StopReason `json:"stop_reason,omitempty"`
	StopSequence string     `json:"stop_sequence,omitempty"`
	Err          *Error     `json:"error,omitempty"`
}

// Stream yields events until io.EOF. Close releases the upstream
// connection and may be called at any time.
type Stream interface {
	Next() (Event, error)
	Close() error
}

// SliceStream replays a fixed list of events (cache hits, tests).
type SliceStream struct {
	Events []Event
	i      int
}

// Next returns the next event or io.EOF.
func (s *SliceStream) Next() (Event, error) {
	if s.i >= len(s.Events) {
		return Event{}, io.EOF
	}
	s.i++
	return s.Events[s.i-1], nil
}

// Close does nothing.
func (s *SliceStream) Close() error { return nil }

// Accumulator folds stream events into a Response, checking that the
// stream is well formed.
type Accumulator struct {
	resp    Response
	open    map[int]bool
	args    map[int]*strings.Builder
	started bool
	stopped bool
}

// NewAccumulator returns an empty accumulator.
func NewAccumulator() *Accumulator {
	return &Accumulator{open: map[int]bool{}, args: map[int]*strings.Builder{}}
}

// Add folds one event in. An EventError is returned as its *Error.
func (a *Accumulator) Add(ev Event) error {
	switch ev.Type {
	case EventStart:
		if a.started {
			return errors.New("llm: stream started twice")
		}
		a.started = true
		a.resp.ID, a.resp.Model = ev.ID, ev.Model
		if ev.Usage != nil {
			a.resp.Usage = *ev.Usage
		}
	case EventPartStart:
		if ev.Part == nil {
			return errors.New("llm: part_start without a part")
		}
		if ev.Index != len(a.resp.Content) {
			return fmt.Errorf("llm: part %d started, expected index %d", ev.Index, len(a.resp.Content))
		}
		p := *ev.Part
		if p.ToolCall != nil {
			tc := *p.ToolCall
			p.ToolCall = &tc
			a.args[ev.Index] = &strings.Builder{}
			a.args[ev.Index].Write(tc.Arguments)
		}
		a.resp.Content = append(a.resp.Content, p)
		a.open[ev.Index] = true
	case EventDelta:
		if !a.open[ev.Index] {
			return fmt.Errorf("llm: delta for part %d that is not open", ev.Index)
		}
		p := &a.resp.Content[ev.Index]
		p.Text += ev.Delta.Text
		p.Signature += ev.Delta.Signature
		if ev.Delta.Arguments != "" {
			b := a.args[ev.Index]
			if b == nil {
				return fmt.Errorf("llm: arguments delta for part %d, which is no tool call", ev.Index)
			}
			b.WriteString(ev.Delta.Arguments)
		}
	case EventPartStop:
		if !a.open[ev.Index] {
			return fmt.Errorf("llm: part %d stopped but not open", ev.Index)
		}
		delete(a.open, ev.Index)
		if b := a.args[ev.Index]; b != nil {
			a.resp.Content[ev.Index].ToolCall.Arguments = NormalizeArguments(b.String())
		}
	case EventUsage:
		if ev.Usage != nil {
			a.resp.Usage = MergeUsage(a.resp.Usage, *ev.Usage)
		}
	case EventStop:
		a.stopped = true
		a.resp.StopReason, a.resp.StopSequence = ev.StopReason, ev.StopSequence
		if ev.Usage != nil {
			a.resp.Usage = MergeUsage(a.resp.Usage, *ev.Usage)
		}
	case EventError:
		if ev.Err == nil {
			return &Error{Type: ErrServer, Message: "stream error"}
		}
		return ev.Err
	default:
		return fmt.Errorf("llm: unknown event %q", ev.Type)
	}
	return nil
}

// MergeUsage overlays the non-zero fields of u on base: upstreams report
// input tokens early and output tokens late.
func MergeUsage(base, u Usage) Usage {
	if u.InputTokens != 0 {
		base.InputTokens = u.InputTokens
	}
	if u.OutputTokens != 0 {
		base.OutputTokens = u.OutputTokens
	}
	if u.CacheReadTokens != 0 {
		base.CacheReadTokens = u.CacheReadTokens
	}
	if u.CacheWriteTokens != 0 {
		base.CacheWriteTokens = u.CacheWriteTokens
	}
	if u.ReasoningTokens != 0 {
		base.ReasoningTokens = u.ReasoningTokens
	}
	base.Estimated = base.Estimated || u.Estimated
	return base
}

// Response returns the folded response; it fails if the stream did not
// end with Stop or left parts open.
func (a *Accumulator) Response() (*Response, error) {
	if !a.stopped {
		return nil, errors.New("llm: stream ended without a stop event")
	}
	if len(a.open) > 0 {
		return nil, fmt.Errorf("llm: stream ended with %d parts open", len(a.open))
	}
	r := a.resp
	return &r, nil
}

// Collect reads s to the end and returns the folded response. The stream
// is closed.
func Collect(s Stream) (*Response, error) {
	defer s.Close()
	acc := NewAccumulator()
	for {
		ev, err := s.Next()
		if err == io.EOF {
			return acc.Response()
		}
		if err != nil {
			return nil, err
		}
		if err := acc.Add(ev); err != nil {
			return nil, err
		}
	}
}

// Events expands a complete response into the events of a stream, so a
// cached or non-streamed answer can be replayed to a streaming client.
func Events(r *Response) []Event {
	evs := []Event{{Type: EventStart, ID: r.ID, Model: r.Model, Usage: &Usage{InputTokens: r.Usage.InputTokens,
		CacheReadTokens: r.Usage.CacheReadTokens, CacheWriteTokens: r.Usage.CacheWriteTokens}}}
	for i, p := range r.Content {
		start := p
		start.Text, start.Signature = "", ""
		if p.ToolCall != nil {
			tc := *p.ToolCall
			tc.Arguments = nil
			start.ToolCall = &tc
		}
		evs = append(evs, Event{Type: EventPartStart, Index: i, Part: &start})
		d := Delta{Text: p.Text, Signature: p.Signature}
		if p.ToolCall != nil {
			d.Arguments = string(p.ToolCall.Arguments)
		}
		if d != (Delta{}) {
			evs = append(evs, Event{Type: EventDelta, Index: i, Delta: d})
		}
		evs = append(evs, Event{Type: EventPartStop, Index: i})
	}
	u := r.Usage
	evs = append(evs, Event{Type: EventStop, StopReason: r.StopReason, StopSequence: r.StopSequence, Usage: &u})
	return evs
}

// NormalizeArguments turns tool-call argument text into a JSON object:
// empty or whitespace becomes "{}"; anything else is kept verbatim (an
// upstream's malformed JSON is passed on, not silently replaced).
func NormalizeArguments(s string) []byte {
	if strings.TrimSpace(s) == "" {
		return []byte("{}")
	}
	return []byte(s)
}
