package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

// StreamEncoder writes a canonical event stream as the named SSE events
// an Anthropic client expects:
//
//	message_start (content_block_start content_block_delta* content_block_stop)*
//	message_delta message_stop
//
// or an error event that ends the stream. It opens exactly one block per
// canonical part (a repeated PartStart is ignored), numbers blocks
// 0, 1, 2… in the order they start, closes blocks still open before
// message_delta, synthesizes message_start when the first event is not
// Start, and reports tool_use as the stop reason when tool calls were
// streamed under end_turn. Parts an assistant message cannot hold (media)
// are left out. It flushes after every event when w is an http.Flusher,
// or a response writer whose Flush http.ResponseController reaches.
type StreamEncoder struct {
	w     io.Writer
	flush func()

	started, done bool
	blocks        map[int]*encBlock // by canonical index
	open          []*encBlock       // in start order
	next          int               // next Anthropic block index
	tools         bool
	usage         llm.Usage
}

type encBlock struct {
	index int // Anthropic block index
	typ   llm.PartType
	skip  bool // a part Anthropic cannot stream
	open  bool
}

// errEnded is returned for events after the stream's end.
var errEnded = errors.New("anthropic: stream already ended")

// NewStreamEncoder returns an encoder writing to w.
func NewStreamEncoder(w io.Writer) *StreamEncoder {
	return &StreamEncoder{w: w, flush: sse.Flusher(w), blocks: map[int]*encBlock{}}
}

func (e *StreamEncoder) write(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(name)+len(data)+16)
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := e.w.Write(buf); err != nil {
		return err
	}
	if e.flush != nil {
		e.flush()
	}
	return nil
}

// Encode writes the SSE events for one canonical event.
func (e *StreamEncoder) Encode(ev llm.Event) error {
	if e.done {
		return errEnded
	}
	if !e.started && ev.Type != llm.EventStart && ev.Type != llm.EventError {
		if err := e.start(llm.Event{Type: llm.EventStart}); err != nil {
			return err
		}
	}
	switch ev.Type {
	case llm.EventStart:
		if e.started {
			return nil
		}
		return e.start(ev)
	case llm.EventPartStart:
		return e.partStart(ev)
	case llm.EventDelta:
		b := e.blocks[ev.Index]
		if b == nil {
			return fmt.Errorf("anthropic: delta for part %d that was never started", ev.Index)
		}
		if b.skip {
			return nil
		}
		if !b.open {
			return fmt.Errorf("anthropic: delta for part %d after it stopped", ev.Index)
		}
		return e.delta(b, ev.Delta)
	case llm.EventPartStop:
		if b := e.blocks[ev.Index]; b != nil && b.open {
			return e.stopBlock(b)
		}
		return nil
	case llm.EventUsage:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		return nil
	case llm.EventStop:
		return e.finish(ev)
	case llm.EventError:
		e.done = true
		err := ev.Err
		if err == nil {
			err = &llm.Error{Type: llm.ErrServer, Message: "stream error"}
		}
		return e.write("error", ErrorResponse{Type: "error", Error: errorDetail(err, errorStatus(err))})
	}
	return nil
}

func (e *StreamEncoder) start(ev llm.Event) error {
	e.started = true
	if ev.Usage != nil {
		e.usage = llm.MergeUsage(e.usage, *ev.Usage)
	}
	id := ev.ID
	if id == "" {
		id = newMessageID()
	}
	u := usageOut(e.usage)
	if u.OutputTokens == 0 {
		u.OutputTokens = 1 // Anthropic's placeholder; message_delta carries the count
	}
	return e.write("message_start", struct {
		Type    string   `json:"type"`
		Message Response `json:"message"`
	}{"message_start", Response{ID: id, Type: "message", Role: "assistant", Model: ev.Model,
		Content: []ContentBlock{}, Usage: u}})
}

func (e *StreamEncoder) partStart(ev llm.Event) error {
	if ev.Part == nil {
		return errors.New("anthropic: part_start without a part")
	}
	if _, seen := e.blocks[ev.Index]; seen {
		return nil
	}
	p := ev.Part
	b := &encBlock{typ: p.Type}
	e.blocks[ev.Index] = b
	var cb ContentBlock
	var first llm.Delta // content carried by the start event itself
	switch p.Type {
	case llm.PartText:
		cb = ContentBlock{Type: BlockText}
		first.Text = p.Text
	case llm.PartThinking:
		cb = ContentBlock{Type: BlockThinking}
		first.Text, first.Signature = p.Text, p.Signature
	case llm.PartRedactedThinking:
		cb = ContentBlock{Type: BlockRedactedThinking, Data: p.Data}
	case llm.PartToolCall:
		if p.ToolCall == nil {
			return errors.New("anthropic: tool_call part without a tool call")
		}
		e.tools = true
		cb = ContentBlock{Type: BlockToolUse, ID: p.ToolCall.ID, Name: p.ToolCall.Name, Input: json.RawMessage("{}")}
		first.Arguments = string(p.ToolCall.Arguments)
	default:
		b.skip = true
		return nil
	}
	b.index, b.open = e.next, true
	e.next++
	e.open = append(e.open, b)
	var err error
	if cb.Type == BlockThinking {
		// The start of a thinking block carries an empty thinking text and
		// no signature (MarshalJSON would add one).
		err = e.write("content_block_start", struct {
			Type         string `json:"type"`
			Index        int    `json:"index"`
			ContentBlock any    `json:"content_block"`
		}{"content_block_start", b.index, struct {
			Type     string `json:"type"`
			Thinking string `json:"thinking"`
		}{BlockThinking, ""}})
	} else {
		err = e.write("content_block_start", struct {
			Type         string       `json:"type"`
			Index        int          `json:"index"`
			ContentBlock ContentBlock `json:"content_block"`
		}{"content_block_start", b.index, cb})
	}
	if err != nil {
		return err
	}
	return e.delta(b, first)
}

type deltaEvent struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta any    `json:"delta"`
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type thinkingDelta struct {
	Type     string `json:"type"`
	Thinking string `json:"thinking"`
}

type signatureDelta struct {
	Type      string `json:"type"`
	Signature string `json:"signature"`
}

type jsonDelta struct {
	Type        string `json:"type"`
	PartialJSON string `json:"partial_json"`
}

func (e *StreamEncoder) delta(b *encBlock, d llm.Delta) error {
	var out []any
	switch b.typ {
	case llm.PartText:
		if d.Text != "" {
			out = append(out, textDelta{"text_delta", d.Text})
		}
	case llm.PartThinking:
		if d.Text != "" {
			out = append(out, thinkingDelta{"thinking_delta", d.Text})
		}
		if d.Signature != "" {
			out = append(out, signatureDelta{"signature_delta", d.Signature})
		}
	case llm.PartToolCall:
		if d.Arguments != "" {
			out = append(out, jsonDelta{"input_json_delta", d.Arguments})
		}
	}
	for _, v := range out {
		if err := e.write("content_block_delta", deltaEvent{"content_block_delta", b.index, v}); err != nil {
			return err
		}
	}
	return nil
}

func (e *StreamEncoder) stopBlock(b *encBlock) error {
	b.open = false
	for i, o := range e.open {
		if o == b {
			e.open = append(e.open[:i], e.open[i+1:]...)
			break
		}
	}
	return e.write("content_block_stop", struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}{"content_block_stop", b.index})
}

func (e *StreamEncoder) finish(ev llm.Event) error {
	for len(e.open) > 0 {
		if err := e.stopBlock(e.open[0]); err != nil {
			return err
		}
	}
	if ev.Usage != nil {
		e.usage = llm.MergeUsage(e.usage, *ev.Usage)
	}
	e.done = true
	stop := stopReasonOut(ev.StopReason, e.tools)
	var seq *string
	if ev.StopSequence != "" {
		s := ev.StopSequence
		seq = &s
	}
	err := e.write("message_delta", struct {
		Type  string `json:"type"`
		Delta struct {
			StopReason   string  `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		} `json:"delta"`
		Usage Usage `json:"usage"`
	}{Type: "message_delta", Delta: struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	}{stop, seq}, Usage: usageOut(e.usage)})
	if err != nil {
		return err
	}
	return e.write("message_stop", struct {
		Type string `json:"type"`
	}{"message_stop"})
}

// Ping writes a ping event, Anthropic's keep-alive; the handler may call
// it while an upstream is slow. It does nothing after the stream ended.
func (e *StreamEncoder) Ping() error {
	if e.done {
		return nil
	}
	return e.write("ping", struct {
		Type string `json:"type"`
	}{"ping"})
}

// Close ends the stream. A stream that started but saw neither Stop nor
// Error (the canonical stream broke off) gets an api_error event, so the
// client does not take a truncated answer for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done || !e.started {
		e.done = true
		return nil
	}
	e.done = true
	return e.write("error", ErrorResponse{Type: "error", Error: ErrorDetail{Type: string(llm.ErrServer),
		Message: "upstream stream ended before the message was complete"}})
}
