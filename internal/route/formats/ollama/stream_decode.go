package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// maxLine bounds one NDJSON line of an upstream stream.
const maxLine = 8 << 20

// streamDecoder turns an upstream NDJSON stream into canonical events.
type streamDecoder struct {
	provider string // named in errors
	body     io.ReadCloser
	sc       *bufio.Scanner
	mint     *idMinter
	queue    []llm.Event
	started  bool
	ended    bool
	open     int // canonical index of the open text or thinking part, -1 none
	kind     llm.PartType
	next     int
	tools    bool
}

// NewStreamDecoder reads an upstream /api/chat NDJSON stream.
func NewStreamDecoder(body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, nil, "")
}

// newStreamDecoder is NewStreamDecoder minting tool-call ids with mint
// and naming provider in its errors.
func newStreamDecoder(body io.ReadCloser, mint *idMinter, provider string) *streamDecoder {
	if mint == nil {
		mint = &idMinter{}
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	return &streamDecoder{body: body, sc: sc, mint: mint, provider: provider, open: -1}
}

func (d *streamDecoder) Close() error { return d.body.Close() }

func (d *streamDecoder) emit(ev llm.Event) { d.queue = append(d.queue, ev) }

func (d *streamDecoder) fail(e *llm.Error) {
	d.emit(llm.Event{Type: llm.EventError, Err: upstreamhttp.StreamFailed(d.provider, e)})
	d.ended = true
}

func (d *streamDecoder) Next() (llm.Event, error) {
	for len(d.queue) == 0 {
		if d.ended {
			return llm.Event{}, io.EOF
		}
		d.step()
	}
	ev := d.queue[0]
	d.queue = d.queue[1:]
	return ev, nil
}

func (d *streamDecoder) closeOpen() {
	if d.open >= 0 {
		d.emit(llm.Event{Type: llm.EventPartStop, Index: d.open})
		d.open = -1
	}
}

// text appends a text or thinking delta, opening a part when the kind
// changes.
func (d *streamDecoder) text(kind llm.PartType, s string) {
	if d.open < 0 || d.kind != kind {
		d.closeOpen()
		d.open, d.kind = d.next, kind
		d.next++
		d.emit(llm.Event{Type: llm.EventPartStart, Index: d.open, Part: &llm.Part{Type: kind}})
	}
	d.emit(llm.Event{Type: llm.EventDelta, Index: d.open, Delta: llm.Delta{Text: s}})
}

// step reads lines until it has queued events or the stream ended.
func (d *streamDecoder) step() {
	for d.sc.Scan() {
		line := bytes.TrimSpace(d.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		d.line(line)
		if len(d.queue) > 0 || d.ended {
			return
		}
	}
	err := d.sc.Err()
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		d.fail(upstreamError("a line is longer than " + strconv.Itoa(maxLine>>20) + " MiB"))
	case err != nil:
		d.fail(upstreamError(upstreamhttp.DescribeRead(err)))
	default:
		d.fail(upstreamError("it ended before done"))
	}
}

func (d *streamDecoder) line(line []byte) {
	var eb ErrorBody
	if json.Unmarshal(line, &eb) == nil && eb.Error != "" {
		e := upstreamError(eb.Error)
		if eb.Status >= 400 && eb.Status <= 599 {
			e.Status, e.Type = eb.Status, llm.TypeForStatus(eb.Status)
		}
		d.fail(e)
		return
	}
	var c ChatResponse
	if err := json.Unmarshal(line, &c); err != nil {
		d.fail(upstreamError("a line was not JSON"))
		return
	}
	if !d.started {
		d.started = true
		d.emit(llm.Event{Type: llm.EventStart, ID: responseID(c.CreatedAt), Model: c.Model})
	}
	if c.Message.Thinking != "" {
		d.text(llm.PartThinking, c.Message.Thinking)
	}
	if c.Message.Content != "" {
		d.text(llm.PartText, c.Message.Content)
	}
	for _, tc := range c.Message.ToolCalls {
		d.closeOpen()
		d.tools = true
		idx := d.next
		d.next++
		args, _ := argumentsText(tc.Function.Arguments)
		d.emit(llm.Event{Type: llm.EventPartStart, Index: idx, Part: &llm.Part{Type: llm.PartToolCall,
			ToolCall: &llm.ToolCall{ID: d.mint.next(tc.ID), Name: tc.Function.Name}}})
		d.emit(llm.Event{Type: llm.EventDelta, Index: idx, Delta: llm.Delta{Arguments: string(args)}})
		d.emit(llm.Event{Type: llm.EventPartStop, Index: idx})
	}
	if c.Done {
		d.closeOpen()
		u := llm.Usage{InputTokens: c.PromptEvalCount, OutputTokens: c.EvalCount}
		d.emit(llm.Event{Type: llm.EventStop, StopReason: stopReason(c.DoneReason, d.tools), Usage: &u})
		d.ended = true
	}
}
