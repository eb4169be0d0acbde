package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// streamDecoder turns an upstream chunk stream into canonical events.
type streamDecoder struct {
	body     io.ReadCloser
	provider string // named in errors
	sc       *bufio.Scanner
	queue    []llm.Event
	started  bool
	ended    bool
	open     int // canonical index of the open part, -1 none
	kind     llm.PartType
	next     int         // next canonical index
	tools    map[int]int // upstream tool index -> canonical index
	finish   string
	usage    llm.Usage
	sawDone  bool
	closed   bool
}

// After [DONE], what is left of an upstream body (the chunked terminator,
// normally) is read for at most drainTimeout and drainLimit bytes so that
// its connection can be reused.
const (
	drainTimeout = time.Second
	drainLimit   = 64 << 10
)

// NewStreamDecoder reads an upstream SSE chat completion stream.
func NewStreamDecoder(body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, "")
}

// newStreamDecoder is NewStreamDecoder naming provider in its errors.
func newStreamDecoder(body io.ReadCloser, provider string) *streamDecoder {
	sc := bufio.NewScanner(body)
	// Chunks are a few hundred bytes: start small and let the scanner grow
	// the buffer for the rare long line, up to 8 MiB.
	sc.Buffer(make([]byte, 4<<10), 8<<20)
	return &streamDecoder{body: body, sc: sc, provider: provider, open: -1, tools: map[int]int{}}
}

// Close releases the upstream body. After a complete stream the rest of
// the body is read first, in the background and bounded, so the
// connection goes back to the pool instead of being torn down.
func (d *streamDecoder) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	if !d.sawDone {
		return d.body.Close()
	}
	go func() {
		t := time.AfterFunc(drainTimeout, func() { _ = d.body.Close() })
		_, _ = io.CopyN(io.Discard, d.body, drainLimit)
		t.Stop()
		_ = d.body.Close()
	}()
	return nil
}

func (d *streamDecoder) emit(ev llm.Event) { d.queue = append(d.queue, ev) }

func (d *streamDecoder) closeOpen() {
	if d.open >= 0 {
		d.emit(llm.Event{Type: llm.EventPartStop, Index: d.open})
		d.open = -1
	}
}

// part makes the part of kind (and tool index) current, opening it.
func (d *streamDecoder) part(kind llm.PartType, start *llm.Part, toolIdx int) int {
	if kind == llm.PartToolCall {
		if idx, ok := d.tools[toolIdx]; ok {
			return idx
		}
	} else if d.open >= 0 && d.kind == kind {
		return d.open
	}
	d.closeOpen()
	idx := d.next
	d.next++
	d.open, d.kind = idx, kind
	if kind == llm.PartToolCall {
		d.tools[toolIdx] = idx
	}
	d.emit(llm.Event{Type: llm.EventPartStart, Index: idx, Part: start})
	return idx
}

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

// step reads lines until it has queued events or the stream ended.
func (d *streamDecoder) step() {
	for d.sc.Scan() {
		// The line is the scanner's buffer, valid until the next Scan:
		// chunk copies what it keeps.
		line := bytes.TrimRight(d.sc.Bytes(), "\r")
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // comments, event names, blank separators
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			d.sawDone = true
			d.finishStream()
			return
		}
		d.chunk(data)
		if len(d.queue) > 0 {
			return
		}
	}
	if err := d.sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		d.fail(&llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: upstreamhttp.DescribeRead(err)})
		return
	}
	if d.finish != "" {
		d.finishStream() // some servers omit [DONE]
		return
	}
	d.fail(&llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "it ended before it finished"})
}

// streamChunk is a chunk or an in-stream error, read in one pass.
type streamChunk struct {
	ChatResponse
	Error *ErrorDetail `json:"error"`
}

func (d *streamDecoder) chunk(data []byte) {
	var sc streamChunk
	if err := json.Unmarshal(data, &sc); err != nil {
		// A malformed chunk or a field of an unexpected type: read it
		// again field group by field group, so that an error object is
		// still recognised and an odd "error" beside a good chunk does
		// not spoil it.
		sc = streamChunk{}
		var probe struct {
			Error *ErrorDetail `json:"error"`
		}
		if json.Unmarshal(data, &probe) == nil {
			sc.Error = probe.Error
		}
		if sc.Error == nil {
			if err := json.Unmarshal(data, &sc.ChatResponse); err != nil {
				d.fail(&llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "a chunk was unreadable (not JSON)"})
				return
			}
		}
	}
	if e := sc.Error; e != nil {
		status := http.StatusBadGateway
		if e.Type == "rate_limit_error" || e.Code != nil && *e.Code == "rate_limit_exceeded" {
			status = http.StatusTooManyRequests
		}
		d.fail(&llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: e.Message})
		return
	}
	c := &sc.ChatResponse
	if !d.started {
		d.started = true
		d.emit(llm.Event{Type: llm.EventStart, ID: c.ID, Model: c.Model})
	}
	if c.Usage != nil {
		d.usage = usageIn(c.Usage)
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 || ch.Delta == nil {
			if ch.FinishReason != nil {
				d.finish = *ch.FinishReason
			}
			continue
		}
		dl := ch.Delta
		if dl.ReasoningContent != nil && *dl.ReasoningContent != "" {
			idx := d.part(llm.PartThinking, &llm.Part{Type: llm.PartThinking}, 0)
			d.emit(llm.Event{Type: llm.EventDelta, Index: idx, Delta: llm.Delta{Text: *dl.ReasoningContent}})
		}
		if dl.Content != nil && *dl.Content != "" {
			idx := d.part(llm.PartText, &llm.Part{Type: llm.PartText}, 0)
			d.emit(llm.Event{Type: llm.EventDelta, Index: idx, Delta: llm.Delta{Text: *dl.Content}})
		}
		for _, tc := range dl.ToolCalls {
			ti := 0
			if tc.Index != nil {
				ti = *tc.Index
			}
			idx := d.part(llm.PartToolCall, &llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: tc.ID, Name: tc.Function.Name}}, ti)
			if tc.Function.Arguments != "" {
				d.emit(llm.Event{Type: llm.EventDelta, Index: idx, Delta: llm.Delta{Arguments: tc.Function.Arguments}})
			}
		}
		if ch.FinishReason != nil {
			d.finish = *ch.FinishReason
		}
	}
}

func (d *streamDecoder) finishStream() {
	if !d.started {
		d.fail(&llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "it carried no completion"})
		return
	}
	d.closeOpen()
	u := d.usage
	d.emit(llm.Event{Type: llm.EventStop, StopReason: stopReason(d.finish), Usage: &u})
	d.ended = true
}
