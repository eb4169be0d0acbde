package anthropic

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// maxEventLine bounds one SSE line of an upstream stream.
const maxEventLine = 16 << 20

// streamDecoder turns an upstream's SSE stream into canonical events.
type streamDecoder struct {
	body     io.ReadCloser
	sse      *sse.Reader
	provider string

	queue   []llm.Event
	done    bool
	started bool
	blocks  map[int]*decBlock // by Anthropic index
	open    []*decBlock       // in start order
	next    int               // next canonical index
	usage   llm.Usage
	stop    llm.StopReason
	stopSeq string
}

type decBlock struct {
	index int // canonical index
	typ   llm.PartType
	skip  bool // a block the canonical model cannot hold
	open  bool
}

// NewStreamDecoder reads an Anthropic SSE stream (named events, data
// lines, comments, LF, CRLF or CR line ends) and yields canonical events
// in order:
//
//   - message_start → Start (ID, Model, Usage with input and cache tokens)
//   - content_block_start → PartStart, index = Anthropic index (blocks the
//     canonical model cannot hold, such as server tool blocks, are skipped
//     and later parts renumbered so indexes stay dense)
//   - content_block_delta → Delta (text, thinking, signature, arguments)
//   - content_block_stop → PartStop
//   - message_delta → remembered stop reason and cumulative usage
//   - message_stop → PartStop for blocks left open, then Stop with usage
//   - ping and unknown events are ignored
//   - error → Error with *llm.Error{InStream: true} typed from the event
//
// A stream that ends before message_stop, fails to read or breaks the
// protocol ends with an Error event (status 502, or 0 for read errors).
// After Stop or Error, Next returns io.EOF. Close closes r.
func NewStreamDecoder(r io.ReadCloser) llm.Stream {
	return newStreamDecoder(r, "")
}

func newStreamDecoder(r io.ReadCloser, provider string) *streamDecoder {
	return &streamDecoder{body: r, sse: sse.NewReader(r, maxEventLine), provider: provider, blocks: map[int]*decBlock{}}
}

// Next returns the next canonical event, or io.EOF after the last.
func (d *streamDecoder) Next() (llm.Event, error) {
	for len(d.queue) == 0 {
		if d.done {
			return llm.Event{}, io.EOF
		}
		ev, err := d.sse.Next()
		switch {
		case err == io.EOF:
			d.fail(http.StatusBadGateway, "it ended before message_stop")
		case err != nil:
			d.fail(0, upstreamhttp.DescribeRead(err))
		default:
			d.handle(ev.Name, ev.Data)
		}
	}
	ev := d.queue[0]
	d.queue = d.queue[1:]
	return ev, nil
}

// Close releases the upstream connection.
func (d *streamDecoder) Close() error {
	d.done = true
	d.queue = nil
	return d.body.Close()
}

func (d *streamDecoder) emit(ev llm.Event) { d.queue = append(d.queue, ev) }

func (d *streamDecoder) fail(status int, msg string) {
	d.failWith(&llm.Error{Status: status, Type: llm.ErrServer, Message: msg})
}

func (d *streamDecoder) failWith(e *llm.Error) {
	d.emit(llm.Event{Type: llm.EventError, Err: upstreamhttp.StreamFailed(d.provider, e)})
	d.done = true
}

func (d *streamDecoder) malformed(format string, args ...any) {
	d.fail(http.StatusBadGateway, "malformed stream: "+fmt.Sprintf(format, args...))
}

func (d *streamDecoder) ensureStarted() {
	if !d.started {
		d.started = true
		d.emit(llm.Event{Type: llm.EventStart, Usage: &llm.Usage{}})
	}
}

func (d *streamDecoder) handle(name string, data []byte) {
	var ev StreamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		d.malformed("%s event: %v", name, err)
		return
	}
	if name == "" {
		name = ev.Type
	}
	switch name {
	case "ping":
	case "message_start":
		if d.started {
			d.malformed("message_start after the message started")
			return
		}
		d.started = true
		start := llm.Event{Type: llm.EventStart, Usage: &llm.Usage{}}
		if m := ev.Message; m != nil {
			start.ID, start.Model = m.ID, m.Model
			// output_tokens here is a placeholder; message_delta has the count.
			d.usage = llm.Usage{InputTokens: m.Usage.InputTokens, CacheReadTokens: m.Usage.CacheReadInputTokens,
				CacheWriteTokens: m.Usage.CacheCreationInputTokens}
			u := d.usage
			start.Usage = &u
		}
		d.emit(start)
	case "content_block_start":
		d.blockStart(ev)
	case "content_block_delta":
		d.blockDelta(ev)
	case "content_block_stop":
		b := d.blocks[ev.Index]
		switch {
		case b == nil:
			d.malformed("content_block_stop for block %d that never started", ev.Index)
		case b.open && !b.skip:
			d.closeBlock(b)
		}
	case "message_delta":
		d.ensureStarted()
		if ev.Delta != nil {
			if ev.Delta.StopReason != nil {
				d.stop = stopReasonIn(ev.Delta.StopReason)
			}
			if ev.Delta.StopSequence != nil {
				d.stopSeq = *ev.Delta.StopSequence
			}
		}
		if ev.Usage != nil {
			d.usage = llm.MergeUsage(d.usage, usageIn(*ev.Usage))
		}
	case "message_stop":
		d.ensureStarted()
		for len(d.open) > 0 {
			d.closeBlock(d.open[0])
		}
		u := d.usage
		d.emit(llm.Event{Type: llm.EventStop, StopReason: d.stop, StopSequence: d.stopSeq, Usage: &u})
		d.done = true
	case "error":
		detail := ErrorDetail{Type: string(llm.ErrServer), Message: "upstream stream error"}
		if ev.Error != nil {
			detail = *ev.Error
		}
		typ, status, code := errorTypeIn(detail.Type)
		if typ == "" {
			typ, status = llm.ErrServer, http.StatusInternalServerError
		}
		d.failWith(&llm.Error{Status: status, Type: typ, Code: code, Message: detail.Message})
	}
}

func (d *streamDecoder) blockStart(ev StreamEvent) {
	d.ensureStarted()
	if _, seen := d.blocks[ev.Index]; seen {
		d.malformed("block %d started twice", ev.Index)
		return
	}
	cb := ev.ContentBlock
	if cb == nil {
		d.malformed("content_block_start without content_block")
		return
	}
	var p llm.Part
	var first llm.Delta
	switch cb.Type {
	case BlockText:
		p = llm.Part{Type: llm.PartText}
		first.Text = cb.Text
	case BlockThinking:
		p = llm.Part{Type: llm.PartThinking}
		first.Text, first.Signature = cb.Thinking, cb.Signature
	case BlockRedactedThinking:
		p = llm.Part{Type: llm.PartRedactedThinking, Data: cb.Data}
	case BlockToolUse:
		p = llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: cb.ID, Name: cb.Name}}
		if args, ok := argumentsText(cb.Input); ok && string(args) != "{}" {
			first.Arguments = string(args)
		}
	default:
		d.blocks[ev.Index] = &decBlock{skip: true}
		return
	}
	b := &decBlock{index: d.next, typ: p.Type, open: true}
	d.next++
	d.blocks[ev.Index] = b
	d.open = append(d.open, b)
	d.emit(llm.Event{Type: llm.EventPartStart, Index: b.index, Part: &p})
	if first != (llm.Delta{}) {
		d.emit(llm.Event{Type: llm.EventDelta, Index: b.index, Delta: first})
	}
}

func (d *streamDecoder) blockDelta(ev StreamEvent) {
	b := d.blocks[ev.Index]
	switch {
	case b == nil:
		d.malformed("delta for block %d that never started", ev.Index)
		return
	case b.skip:
		return
	case !b.open:
		d.malformed("delta for block %d after it stopped", ev.Index)
		return
	case ev.Delta == nil:
		d.malformed("content_block_delta without delta")
		return
	}
	var delta llm.Delta
	var want llm.PartType
	switch ev.Delta.Type {
	case "text_delta":
		want, delta.Text = llm.PartText, ev.Delta.Text
	case "thinking_delta":
		want, delta.Text = llm.PartThinking, ev.Delta.Thinking
	case "signature_delta":
		want, delta.Signature = llm.PartThinking, ev.Delta.Signature
	case "input_json_delta":
		want, delta.Arguments = llm.PartToolCall, ev.Delta.PartialJSON
	default:
		return // citations_delta and future kinds
	}
	if want != b.typ {
		d.malformed("%s for a %s block", ev.Delta.Type, b.typ)
		return
	}
	if delta != (llm.Delta{}) {
		d.emit(llm.Event{Type: llm.EventDelta, Index: b.index, Delta: delta})
	}
}

func (d *streamDecoder) closeBlock(b *decBlock) {
	b.open = false
	for i, o := range d.open {
		if o == b {
			d.open = append(d.open[:i], d.open[i+1:]...)
			break
		}
	}
	d.emit(llm.Event{Type: llm.EventPartStop, Index: b.index})
}
