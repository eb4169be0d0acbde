package responses

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// maxEventLine bounds one SSE line of an upstream stream.
const maxEventLine = 16 << 20

// streamDecoder turns an upstream's Responses SSE stream into canonical
// events.
type streamDecoder struct {
	body     io.ReadCloser
	sc       *bufio.Scanner
	provider string

	queue   []llm.Event
	done    bool
	started bool
	next    int                // next canonical index
	items   map[int]*decItem   // by output_index
	texts   map[[2]int]*decTxt // by (output_index, content_index)
	open    map[int]bool       // canonical indexes of open parts
	calls   bool
	refusal bool
	usage   llm.Usage
}

type decItem struct {
	kind     string // message, function_call, reasoning, or "" (skipped)
	index    int    // canonical index (function_call, reasoning)
	args     bool   // argument text was streamed
	text     bool   // reasoning text was streamed
	part     int    // the summary (or content) part text last came from
	finished bool
}

type decTxt struct {
	index  int
	closed bool
}

// NewStreamDecoder reads a Responses SSE stream (named events, each data
// line a JSON event with a type) and yields canonical events:
//
//   - response.created → Start (ID, Model)
//   - output_item.added: a function_call opens a tool-call part (call_id
//     kept as the id), a reasoning item a thinking part; a message opens
//     one text part per content_part.added (output_text or refusal)
//   - output_text / refusal / function_call_arguments /
//     reasoning_summary_text / reasoning_text deltas → Delta; summary
//     parts after the first are separated by a blank line
//   - content_part.done and output_item.done → PartStop; a reasoning
//     item's encrypted_content arrives as a signature delta, and text or
//     arguments that were only sent whole (in a .done event) are emitted
//   - response.completed / response.incomplete → Stop with usage
//     (incomplete max_output_tokens → max_tokens, a response with
//     function calls → tool_use)
//   - response.failed and error events → Error (*llm.Error, InStream)
//
// A stream that ends before its terminal event, or that breaks the
// protocol, ends with an Error event. After Stop or Error, Next returns
// io.EOF. Close closes r.
func NewStreamDecoder(r io.ReadCloser) llm.Stream { return newStreamDecoder(r, "") }

func newStreamDecoder(r io.ReadCloser, provider string) *streamDecoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	return &streamDecoder{body: r, sc: sc, provider: provider, items: map[int]*decItem{}, texts: map[[2]int]*decTxt{}, open: map[int]bool{}}
}

// Next returns the next canonical event, or io.EOF after the last.
func (d *streamDecoder) Next() (llm.Event, error) {
	for len(d.queue) == 0 {
		if d.done {
			return llm.Event{}, io.EOF
		}
		data, err := d.readEvent()
		switch {
		case err == io.EOF:
			d.fail(http.StatusBadGateway, "it ended before the response completed")
		case err != nil:
			d.fail(0, upstreamhttp.DescribeRead(err))
		default:
			d.handle(data)
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

// readEvent returns the data of the next SSE event. The event name is not
// needed: every data payload carries its type.
func (d *streamDecoder) readEvent() ([]byte, error) {
	var data []byte
	has := false
	for d.sc.Scan() {
		line := bytes.TrimSuffix(d.sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			if has {
				return data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if has {
			data = append(data, '\n')
		}
		data = append(data, value...)
		has = true
	}
	if err := d.sc.Err(); err != nil {
		return nil, err
	}
	if has {
		return data, nil
	}
	return nil, io.EOF
}

func (d *streamDecoder) emit(ev llm.Event) { d.queue = append(d.queue, ev) }

func (d *streamDecoder) fail(status int, msg string) {
	d.failWith(&llm.Error{Status: status, Type: llm.ErrServer, Message: msg})
}

func (d *streamDecoder) failWith(e *llm.Error) {
	d.queue = append(d.queue, llm.Event{Type: llm.EventError, Err: upstreamhttp.StreamFailed(d.provider, e)})
	d.done = true
}

func (d *streamDecoder) malformed(format string, args ...any) {
	d.fail(http.StatusBadGateway, "malformed stream: "+fmt.Sprintf(format, args...))
}

func (d *streamDecoder) ensureStarted(id, model string) {
	if !d.started {
		d.started = true
		d.emit(llm.Event{Type: llm.EventStart, ID: id, Model: model, Usage: &llm.Usage{}})
	}
}

func (d *streamDecoder) startPart(p llm.Part) int {
	i := d.next
	d.next++
	d.open[i] = true
	d.emit(llm.Event{Type: llm.EventPartStart, Index: i, Part: &p})
	return i
}

func (d *streamDecoder) delta(i int, dl llm.Delta) {
	if d.open[i] && dl != (llm.Delta{}) {
		d.emit(llm.Event{Type: llm.EventDelta, Index: i, Delta: dl})
	}
}

func (d *streamDecoder) stopPart(i int) {
	if d.open[i] {
		delete(d.open, i)
		d.emit(llm.Event{Type: llm.EventPartStop, Index: i})
	}
}

func idx(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func (d *streamDecoder) handle(data []byte) {
	if string(bytes.TrimSpace(data)) == "[DONE]" {
		return
	}
	var ev StreamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		d.malformed("%v", err)
		return
	}
	switch ev.Type {
	case "response.created", "response.in_progress", "response.queued":
		if ev.Response != nil {
			d.ensureStarted(ev.Response.ID, ev.Response.Model)
		}
	case "response.output_item.added":
		d.itemAdded(ev)
	case "response.content_part.added":
		d.contentAdded(ev)
	case "response.output_text.delta", "response.refusal.delta":
		if t := d.text(ev); t != nil {
			d.delta(t.index, llm.Delta{Text: ev.Delta})
		}
	case "response.content_part.done":
		if t := d.text(ev); t != nil {
			d.closeText(t)
		}
	case "response.function_call_arguments.delta":
		if it := d.item(ev, "function_call"); it != nil && ev.Delta != "" {
			it.args = true
			d.delta(it.index, llm.Delta{Arguments: ev.Delta})
		}
	case "response.function_call_arguments.done":
		if it := d.item(ev, "function_call"); it != nil && !it.args && ev.Arguments != "" {
			it.args = true
			d.delta(it.index, llm.Delta{Arguments: ev.Arguments})
		}
	case "response.reasoning_summary_text.delta", "response.reasoning_text.delta":
		if it := d.item(ev, "reasoning"); it != nil && ev.Delta != "" {
			part := idx(ev.SummaryIndex)
			if ev.Type == "response.reasoning_text.delta" {
				part = 1<<20 + idx(ev.ContentIndex)
			}
			text := ev.Delta
			if it.text && part != it.part {
				text = "\n\n" + text // a new summary part
			}
			it.text, it.part = true, part
			d.delta(it.index, llm.Delta{Text: text})
		}
	case "response.output_item.done":
		d.itemDone(ev)
	case "response.completed", "response.incomplete":
		d.finish(ev)
	case "response.failed":
		var re *ResponseError
		if ev.Response != nil {
			re = ev.Response.Error
		}
		d.failWith(failedError(re))
	case "error":
		code := ""
		if ev.Code != nil {
			code = *ev.Code
		}
		msg := ev.Message
		if msg == "" {
			msg = "an error event without a message"
		}
		e := failedError(&ResponseError{Code: code, Message: msg})
		d.failWith(e)
	}
}

// item returns the open item an event refers to by output_index, when it
// is of kind; an event for another kind is a protocol error.
func (d *streamDecoder) item(ev StreamEvent, kind string) *decItem {
	it := d.items[idx(ev.OutputIndex)]
	switch {
	case it == nil:
		d.malformed("%s for output %d that was never added", ev.Type, idx(ev.OutputIndex))
		return nil
	case it.kind != kind || it.finished:
		if it.kind != "" && !it.finished {
			d.malformed("%s for a %s item", ev.Type, it.kind)
		}
		return nil
	}
	return it
}

func (d *streamDecoder) itemAdded(ev StreamEvent) {
	if !d.started {
		d.ensureStarted("", "")
	}
	out := idx(ev.OutputIndex)
	if _, seen := d.items[out]; seen {
		d.malformed("output %d added twice", out)
		return
	}
	if ev.Item == nil {
		d.malformed("output_item.added without an item")
		return
	}
	it := &decItem{kind: ev.Item.Type, part: -1}
	d.items[out] = it
	switch ev.Item.Type {
	case "message":
	case "function_call":
		d.calls = true
		it.index = d.startPart(llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: ev.Item.CallID, Name: ev.Item.Name}})
		if ev.Item.Arguments != "" {
			it.args = true
			d.delta(it.index, llm.Delta{Arguments: ev.Item.Arguments})
		}
	case "reasoning":
		it.index = d.startPart(llm.Part{Type: llm.PartThinking})
	default:
		it.kind = "" // built-in tool calls and other items the canonical model cannot hold
	}
}

// text returns the text part an event refers to by (output_index,
// content_index).
func (d *streamDecoder) text(ev StreamEvent) *decTxt {
	if d.item(ev, "message") == nil {
		return nil
	}
	t := d.texts[[2]int{idx(ev.OutputIndex), idx(ev.ContentIndex)}]
	if t == nil {
		// Deltas without content_part.added: open the part now.
		return d.openText(ev, "output_text")
	}
	if t.closed {
		return nil
	}
	return t
}

func (d *streamDecoder) openText(ev StreamEvent, typ string) *decTxt {
	key := [2]int{idx(ev.OutputIndex), idx(ev.ContentIndex)}
	if _, seen := d.texts[key]; seen {
		d.malformed("content part %d of output %d added twice", key[1], key[0])
		return nil
	}
	if typ == "refusal" {
		d.refusal = true
	}
	t := &decTxt{index: d.startPart(llm.Part{Type: llm.PartText})}
	d.texts[key] = t
	return t
}

func (d *streamDecoder) contentAdded(ev StreamEvent) {
	if d.item(ev, "message") == nil {
		return
	}
	var part ContentPart
	_ = json.Unmarshal(ev.Part, &part)
	if part.Type != "output_text" && part.Type != "refusal" {
		return
	}
	if t := d.openText(ev, part.Type); t != nil {
		d.delta(t.index, llm.Delta{Text: part.Text + part.Refusal})
	}
}

func (d *streamDecoder) closeText(t *decTxt) {
	t.closed = true
	d.stopPart(t.index)
}

func (d *streamDecoder) itemDone(ev StreamEvent) {
	out := idx(ev.OutputIndex)
	it := d.items[out]
	if it == nil {
		// An item sent only whole: add it first.
		d.itemAdded(ev)
		if it = d.items[out]; it == nil {
			return
		}
	}
	if it.finished || ev.Item == nil {
		return
	}
	it.finished = true
	switch it.kind {
	case "message":
		var cps []ContentPart
		_ = json.Unmarshal(ev.Item.Content, &cps)
		for ci, c := range cps {
			key := [2]int{out, ci}
			t := d.texts[key]
			if t == nil && (c.Type == "output_text" || c.Type == "refusal") {
				// Content sent only whole.
				t = d.openText(StreamEvent{OutputIndex: &out, ContentIndex: &ci}, c.Type)
				if t == nil {
					return
				}
				d.delta(t.index, llm.Delta{Text: c.Text + c.Refusal})
			}
			if t != nil && !t.closed {
				d.closeText(t)
			}
		}
		// Close what content_part.done left open, in order.
		var left []*decTxt
		for key, t := range d.texts {
			if key[0] == out && !t.closed {
				left = append(left, t)
			}
		}
		sort.Slice(left, func(i, j int) bool { return left[i].index < left[j].index })
		for _, t := range left {
			d.closeText(t)
		}
	case "function_call":
		if !it.args && ev.Item.Arguments != "" {
			d.delta(it.index, llm.Delta{Arguments: ev.Item.Arguments})
		}
		d.stopPart(it.index)
	case "reasoning":
		if !it.text {
			var texts []string
			for _, s := range ev.Item.Summary {
				if s.Text != "" {
					texts = append(texts, s.Text)
				}
			}
			if len(texts) > 0 {
				d.delta(it.index, llm.Delta{Text: joinSummary(texts)})
			}
		}
		// The done item holds the complete encrypted content.
		d.delta(it.index, llm.Delta{Signature: ev.Item.EncryptedContent})
		d.stopPart(it.index)
	}
}

func joinSummary(texts []string) string { return strings.Join(texts, "\n\n") }

func (d *streamDecoder) finish(ev StreamEvent) {
	r := ev.Response
	if r == nil {
		d.malformed("%s without a response", ev.Type)
		return
	}
	if !d.started {
		d.ensureStarted(r.ID, r.Model)
	}
	if d.next == 0 && len(r.Output) > 0 {
		// No item events: replay the final output.
		parts, refusal := decodeOutput(r.Output)
		d.refusal = d.refusal || refusal
		for _, p := range parts {
			start := p
			start.Text, start.Signature = "", ""
			dl := llm.Delta{Text: p.Text, Signature: p.Signature}
			if p.ToolCall != nil {
				d.calls = true
				tc := *p.ToolCall
				tc.Arguments = nil
				start.ToolCall = &tc
				dl.Arguments = string(p.ToolCall.Arguments)
			}
			i := d.startPart(start)
			d.delta(i, dl)
			d.stopPart(i)
		}
	}
	// Close what the upstream left open, in index order.
	for i := 0; i < d.next; i++ {
		d.stopPart(i)
	}
	u := usageIn(r.Usage)
	d.usage = u
	stop := stopReason(r.Status, r.IncompleteDetails, d.calls)
	if ev.Type == "response.incomplete" && stop == llm.StopEnd {
		stop = llm.StopMaxTokens
	}
	if d.refusal && stop == llm.StopEnd {
		stop = llm.StopRefusal
	}
	d.emit(llm.Event{Type: llm.EventStop, StopReason: stop, Usage: &u})
	d.done = true
}
