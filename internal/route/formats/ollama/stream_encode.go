package ollama

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

// StreamEncoder writes canonical events as Ollama NDJSON.
type StreamEncoder struct {
	w            io.Writer
	flush        func() // pushes each line to the client
	model        string
	now          func() time.Time
	start, first time.Time
	kinds        map[int]llm.PartType
	calls        map[int]*openCall
	nTools       int
	usage        llm.Usage
	done         bool
	generate     bool // /api/generate lines (response, not message)
}

type openCall struct {
	id, name string
	args     strings.Builder
}

// NewStreamEncoder writes to w. model names the model in every line (the
// name the client asked for); empty means the upstream's. now stamps
// created_at and measures the durations (nil means time.Now).
func NewStreamEncoder(w io.Writer, model string, now func() time.Time) *StreamEncoder {
	if now == nil {
		now = time.Now
	}
	return &StreamEncoder{w: w, flush: sse.Flusher(w), model: model, now: now, start: now(), kinds: map[int]llm.PartType{}, calls: map[int]*openCall{}}
}

func (e *StreamEncoder) line(v any) error {
	if c, ok := v.(ChatResponse); ok && e.generate {
		v = generateOf(c)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := e.w.Write(append(b, '\n')); err != nil {
		return err
	}
	e.flush()
	return nil
}

func (e *StreamEncoder) chunk(msg Message) error {
	t := e.now()
	if e.first.IsZero() {
		e.first = t
	}
	msg.Role = "assistant"
	return e.line(ChatResponse{Model: e.model, CreatedAt: t.UTC(), Message: msg})
}

func (e *StreamEncoder) flushCall(idx int) error {
	c := e.calls[idx]
	if c == nil {
		return nil
	}
	delete(e.calls, idx)
	n := e.nTools
	e.nTools++
	return e.chunk(Message{ToolCalls: []ToolCall{{ID: c.id, Function: ToolCallFunction{Index: n, Name: c.name, Arguments: argumentsObject([]byte(c.args.String()))}}}})
}

// Encode writes what one event adds to the stream.
func (e *StreamEncoder) Encode(ev llm.Event) error {
	if e.done {
		return nil
	}
	switch ev.Type {
	case llm.EventStart:
		if e.model == "" {
			e.model = ev.Model
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventPartStart:
		if ev.Part == nil {
			return nil
		}
		e.kinds[ev.Index] = ev.Part.Type
		if ev.Part.Type == llm.PartToolCall && ev.Part.ToolCall != nil {
			c := &openCall{id: ev.Part.ToolCall.ID, name: ev.Part.ToolCall.Name}
			c.args.Write(ev.Part.ToolCall.Arguments)
			e.calls[ev.Index] = c
		}
	case llm.EventDelta:
		switch e.kinds[ev.Index] {
		case llm.PartText:
			if ev.Delta.Text != "" {
				return e.chunk(Message{Content: ev.Delta.Text})
			}
		case llm.PartThinking:
			if ev.Delta.Text != "" {
				return e.chunk(Message{Thinking: ev.Delta.Text})
			}
		case llm.PartToolCall:
			if c := e.calls[ev.Index]; c != nil {
				c.args.WriteString(ev.Delta.Arguments)
			}
		}
	case llm.EventPartStop:
		return e.flushCall(ev.Index)
	case llm.EventUsage:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventStop:
		open := make([]int, 0, len(e.calls))
		for idx := range e.calls {
			open = append(open, idx)
		}
		sort.Ints(open)
		for _, idx := range open {
			if err := e.flushCall(idx); err != nil {
				return err
			}
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		e.done = true
		end := e.now()
		first := e.first
		if first.IsZero() {
			first = end
		}
		return e.line(ChatResponse{Model: e.model, CreatedAt: end.UTC(), Message: Message{Role: "assistant"}, Done: true,
			DoneReason: doneReason(ev.StopReason), PromptEvalCount: e.usage.PromptTokens(), EvalCount: e.usage.OutputTokens,
			TotalDuration: int64(end.Sub(e.start)), PromptEvalDuration: int64(first.Sub(e.start)), EvalDuration: int64(end.Sub(first))})
	case llm.EventError:
		e.done = true
		msg := "upstream stream failed"
		if ev.Err != nil && ev.Err.Message != "" {
			msg = ev.Err.Message
		}
		return e.line(ErrorBody{Error: msg})
	}
	return nil
}

// Close ends a stream that stopped without a Stop or Error event with an
// error line, so a truncated answer is not mistaken for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done {
		return nil
	}
	return e.Encode(llm.Event{Type: llm.EventError, Err: &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer,
		Message: "upstream stream ended unexpectedly", InStream: true}})
}
