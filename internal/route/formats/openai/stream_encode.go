package openai

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

// StreamEncoder writes canonical events as chat.completion.chunk SSE,
// flushing after each when w can be flushed.
type StreamEncoder struct {
	w            io.Writer
	flush        func()
	includeUsage bool
	id, model    string
	created      int64
	started      bool
	done         bool
	toolIndex    map[int]int // canonical part index -> tool-call index
	kinds        map[int]llm.PartType
	usage        llm.Usage
}

// NewStreamEncoder writes to w; includeUsage adds the final usage chunk
// the client asked for with stream_options.include_usage.
func NewStreamEncoder(w io.Writer, includeUsage bool, created int64) *StreamEncoder {
	return &StreamEncoder{w: w, flush: sse.Flusher(w), includeUsage: includeUsage, created: created, toolIndex: map[int]int{}, kinds: map[int]llm.PartType{}}
}

func (e *StreamEncoder) chunk(delta *RespMessage, finish *string, usage *Usage) error {
	c := ChatResponse{ID: responseID(e.id), Object: "chat.completion.chunk", Created: e.created, Model: e.model, Usage: usage}
	if delta != nil || finish != nil {
		if delta == nil {
			delta = &RespMessage{}
		}
		c.Choices = []Choice{{Delta: delta, FinishReason: finish}}
	} else {
		c.Choices = []Choice{}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return e.write("data: " + string(b) + "\n\n")
}

func (e *StreamEncoder) write(s string) error {
	if _, err := io.WriteString(e.w, s); err != nil {
		return err
	}
	if e.flush != nil {
		e.flush()
	}
	return nil
}

func (e *StreamEncoder) start() error {
	if e.started {
		return nil
	}
	e.started = true
	empty := ""
	return e.chunk(&RespMessage{Role: "assistant", Content: &empty}, nil, nil)
}

// Encode writes one event.
func (e *StreamEncoder) Encode(ev llm.Event) error {
	if e.done {
		return nil
	}
	switch ev.Type {
	case llm.EventStart:
		e.id, e.model = ev.ID, ev.Model
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		return e.start()
	case llm.EventPartStart:
		if err := e.start(); err != nil {
			return err
		}
		e.kinds[ev.Index] = ev.Part.Type
		if ev.Part.Type == llm.PartToolCall && ev.Part.ToolCall != nil {
			n := len(e.toolIndex)
			e.toolIndex[ev.Index] = n
			return e.chunk(&RespMessage{ToolCalls: []ToolCall{{Index: &n, ID: ev.Part.ToolCall.ID, Type: "function",
				Function: FunctionCall{Name: ev.Part.ToolCall.Name, Arguments: ""}}}}, nil, nil)
		}
	case llm.EventDelta:
		switch e.kinds[ev.Index] {
		case llm.PartText:
			if ev.Delta.Text != "" {
				t := ev.Delta.Text
				return e.chunk(&RespMessage{Content: &t}, nil, nil)
			}
		case llm.PartThinking:
			if ev.Delta.Text != "" {
				t := ev.Delta.Text
				return e.chunk(&RespMessage{ReasoningContent: &t}, nil, nil)
			}
		case llm.PartToolCall:
			if ev.Delta.Arguments != "" {
				n := e.toolIndex[ev.Index]
				return e.chunk(&RespMessage{ToolCalls: []ToolCall{{Index: &n, Function: FunctionCall{Arguments: ev.Delta.Arguments}}}}, nil, nil)
			}
		}
	case llm.EventUsage:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventStop:
		if err := e.start(); err != nil {
			return err
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		fr := finishReason(ev.StopReason)
		if len(e.toolIndex) > 0 && fr == "stop" {
			fr = "tool_calls"
		}
		if err := e.chunk(&RespMessage{}, &fr, nil); err != nil {
			return err
		}
		if e.includeUsage {
			if err := e.chunk(nil, nil, usageOut(e.usage)); err != nil {
				return err
			}
		}
		e.done = true
		return e.write("data: [DONE]\n\n")
	case llm.EventError:
		// OpenAI reports a failure inside a 200 stream as a data line
		// holding an error object; no [DONE] follows.
		e.done = true
		_, body := EncodeError(ev.Err)
		return e.write("data: " + string(body) + "\n\n")
	}
	return nil
}

// Close ends a stream that stopped without a Stop or Error event with an
// error line, so a truncated answer is not mistaken for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done {
		return nil
	}
	return e.Encode(llm.Event{Type: llm.EventError, Err: &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream ended unexpectedly", InStream: true}})
}
