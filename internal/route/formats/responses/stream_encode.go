package responses

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

// StreamEncoder writes a canonical event stream as the named SSE events a
// Responses client expects, each with a sequence_number counting from 0:
//
//	response.created response.in_progress
//	( response.output_item.added
//	  [message]   response.content_part.added response.output_text.delta*
//	              response.output_text.done response.content_part.done
//	  [reasoning] (response.reasoning_summary_part.added
//	              response.reasoning_summary_text.delta*
//	              response.reasoning_summary_text.done
//	              response.reasoning_summary_part.done)?
//	  [function]  response.function_call_arguments.delta*
//	              response.function_call_arguments.done
//	  response.output_item.done )*
//	response.completed | response.incomplete
//
// A failure ends the stream with an error event followed by
// response.failed. Every canonical text part becomes one message item,
// every thinking part one reasoning item (its signature as
// encrypted_content), every tool call one function_call item; other parts
// are left out. Item ids are derived from the response id and the output
// index, as Complete derives them, so a stored response matches what was
// streamed. It flushes after every event when w is a response writer.
type StreamEncoder struct {
	w     io.Writer
	flush func() // pushes each event to the client
	meta  Response

	seq           int
	started, done bool
	items         map[int]*encItem // by canonical index
	output        []Item           // finished items, by output index
	open          []*encItem
	usage         llm.Usage
	model         string
}

type encItem struct {
	out        int
	kind       string
	id         string
	call       *llm.ToolCall
	text, sig  strings.Builder
	args       strings.Builder
	summarized bool // a reasoning summary part was opened
	open       bool
}

var errEnded = errors.New("responses: stream already ended")

// NewStreamEncoder writes to w. meta is the response object's skeleton:
// the request's echo with ID, CreatedAt and Model set.
func NewStreamEncoder(w io.Writer, meta Response) *StreamEncoder {
	meta.Object = "response"
	return &StreamEncoder{w: w, flush: sse.Flusher(w), meta: meta, items: map[int]*encItem{}, model: meta.Model}
}

// emit writes one event: the fields of body after type and sequence_number.
func (e *StreamEncoder) emit(name string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(b)+2*len(name)+64)
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: {\"type\":"...)
	buf = strconv.AppendQuote(buf, name)
	buf = append(buf, ",\"sequence_number\":"...)
	buf = strconv.AppendInt(buf, int64(e.seq), 10)
	if len(b) > 2 {
		buf = append(buf, ',')
		buf = append(buf, b[1:]...)
	} else {
		buf = append(buf, '}')
	}
	buf = append(buf, "\n\n"...)
	e.seq++
	if _, err := e.w.Write(buf); err != nil {
		return err
	}
	e.flush()
	return nil
}

type respBody struct {
	Response Response `json:"response"`
}

type itemBody struct {
	OutputIndex int  `json:"output_index"`
	Item        Item `json:"item"`
}

type partBody struct {
	ItemID       string      `json:"item_id"`
	OutputIndex  int         `json:"output_index"`
	ContentIndex int         `json:"content_index"`
	Part         ContentPart `json:"part"`
}

type textDeltaBody struct {
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
	Logprobs     []any  `json:"logprobs"`
}

type textDoneBody struct {
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Text         string `json:"text"`
	Logprobs     []any  `json:"logprobs"`
}

type summaryPartBody struct {
	ItemID       string      `json:"item_id"`
	OutputIndex  int         `json:"output_index"`
	SummaryIndex int         `json:"summary_index"`
	Part         SummaryPart `json:"part"`
}

type summaryDeltaBody struct {
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	SummaryIndex int    `json:"summary_index"`
	Delta        string `json:"delta"`
}

type summaryDoneBody struct {
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	SummaryIndex int    `json:"summary_index"`
	Text         string `json:"text"`
}

type argsDeltaBody struct {
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Delta       string `json:"delta"`
}

type argsDoneBody struct {
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Name        string `json:"name"`
	Arguments   string `json:"arguments"`
}

type errorEventBody struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

// snapshot is the response object as it stands.
func (e *StreamEncoder) snapshot(status string) Response {
	r := e.meta
	r.Model = e.model
	r.Status = status
	r.Output = append([]Item{}, e.output...)
	return r
}

// Encode writes the events for one canonical event.
func (e *StreamEncoder) Encode(ev llm.Event) error {
	if e.done {
		return errEnded
	}
	if !e.started && ev.Type != llm.EventError {
		if err := e.start(ev); err != nil {
			return err
		}
		if ev.Type == llm.EventStart {
			return nil
		}
	}
	switch ev.Type {
	case llm.EventStart:
		return nil
	case llm.EventPartStart:
		return e.partStart(ev)
	case llm.EventDelta:
		it := e.items[ev.Index]
		if it == nil {
			return errors.New("responses: delta for a part that was never started")
		}
		if it.kind == "" || !it.open {
			return nil
		}
		return e.delta(it, ev.Delta)
	case llm.EventPartStop:
		if it := e.items[ev.Index]; it != nil && it.open {
			return e.finishItem(it)
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
		err := ev.Err
		if err == nil {
			err = &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "stream error"}
		}
		return e.fail(err)
	}
	return nil
}

func (e *StreamEncoder) start(ev llm.Event) error {
	e.started = true
	if ev.Type == llm.EventStart {
		if ev.Model != "" {
			e.model = ev.Model
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	}
	if err := e.emit("response.created", respBody{e.snapshot("in_progress")}); err != nil {
		return err
	}
	return e.emit("response.in_progress", respBody{e.snapshot("in_progress")})
}

func (e *StreamEncoder) partStart(ev llm.Event) error {
	if ev.Part == nil {
		return errors.New("responses: part_start without a part")
	}
	if _, seen := e.items[ev.Index]; seen {
		return nil
	}
	p := ev.Part
	it := &encItem{kind: itemKind(p.Type)}
	e.items[ev.Index] = it
	if it.kind == "function_call" && p.ToolCall == nil {
		it.kind = ""
	}
	if it.kind == "" {
		return nil
	}
	it.out, it.open = len(e.output)+len(e.open), true
	e.open = append(e.open, it)
	var first llm.Delta
	switch it.kind {
	case "message":
		it.id = itemID("msg", e.meta.ID, it.out)
		if err := e.emit("response.output_item.added", itemBody{it.out, Item{Type: "message", ID: it.id, Status: "in_progress", Role: "assistant", Content: json.RawMessage("[]")}}); err != nil {
			return err
		}
		if err := e.emit("response.content_part.added", partBody{it.id, it.out, 0, ContentPart{Type: "output_text"}}); err != nil {
			return err
		}
		first.Text = p.Text
	case "reasoning":
		it.id = itemID("rs", e.meta.ID, it.out)
		if err := e.emit("response.output_item.added", itemBody{it.out, reasoningItem(it.id, "", "")}); err != nil {
			return err
		}
		first.Text, first.Signature = p.Text, p.Signature
	case "function_call":
		it.id = itemID("fc", e.meta.ID, it.out)
		tc := *p.ToolCall
		it.call = &tc
		if err := e.emit("response.output_item.added", itemBody{it.out, callItem(it.id, "in_progress", it.call, "")}); err != nil {
			return err
		}
		first.Arguments = string(p.ToolCall.Arguments)
	}
	return e.delta(it, first)
}

func (e *StreamEncoder) delta(it *encItem, d llm.Delta) error {
	switch it.kind {
	case "message":
		if d.Text == "" {
			return nil
		}
		it.text.WriteString(d.Text)
		return e.emit("response.output_text.delta", textDeltaBody{it.id, it.out, 0, d.Text, []any{}})
	case "reasoning":
		it.sig.WriteString(d.Signature)
		if d.Text == "" {
			return nil
		}
		if !it.summarized {
			it.summarized = true
			if err := e.emit("response.reasoning_summary_part.added", summaryPartBody{it.id, it.out, 0, SummaryPart{Type: "summary_text"}}); err != nil {
				return err
			}
		}
		it.text.WriteString(d.Text)
		return e.emit("response.reasoning_summary_text.delta", summaryDeltaBody{it.id, it.out, 0, d.Text})
	case "function_call":
		if d.Arguments == "" {
			return nil
		}
		it.args.WriteString(d.Arguments)
		return e.emit("response.function_call_arguments.delta", argsDeltaBody{it.id, it.out, d.Arguments})
	}
	return nil
}

// finishItem writes an item's closing events. Items finish in the order
// they were opened, so output indexes stay in order.
func (e *StreamEncoder) finishItem(it *encItem) error {
	for len(e.open) > 0 && it.open {
		if err := e.closeItem(e.open[0]); err != nil {
			return err
		}
	}
	return nil
}

func (e *StreamEncoder) closeItem(it *encItem) error {
	it.open = false
	e.open = e.open[1:]
	var done Item
	switch it.kind {
	case "message":
		text := it.text.String()
		if err := e.emit("response.output_text.done", textDoneBody{it.id, it.out, 0, text, []any{}}); err != nil {
			return err
		}
		if err := e.emit("response.content_part.done", partBody{it.id, it.out, 0, ContentPart{Type: "output_text", Text: text}}); err != nil {
			return err
		}
		done = messageItem(it.id, "completed", text)
	case "reasoning":
		text := it.text.String()
		if it.summarized {
			if err := e.emit("response.reasoning_summary_text.done", summaryDoneBody{it.id, it.out, 0, text}); err != nil {
				return err
			}
			if err := e.emit("response.reasoning_summary_part.done", summaryPartBody{it.id, it.out, 0, SummaryPart{Type: "summary_text", Text: text}}); err != nil {
				return err
			}
		}
		done = reasoningItem(it.id, text, it.sig.String())
	case "function_call":
		args := string(llm.NormalizeArguments(it.args.String()))
		if err := e.emit("response.function_call_arguments.done", argsDoneBody{it.id, it.out, it.call.Name, args}); err != nil {
			return err
		}
		done = callItem(it.id, "completed", it.call, args)
	}
	e.output = append(e.output, done)
	return e.emit("response.output_item.done", itemBody{it.out, done})
}

func (e *StreamEncoder) finish(ev llm.Event) error {
	for len(e.open) > 0 {
		if err := e.closeItem(e.open[0]); err != nil {
			return err
		}
	}
	if ev.Usage != nil {
		e.usage = llm.MergeUsage(e.usage, *ev.Usage)
	}
	e.done = true
	status, details := finalStatus(ev.StopReason)
	r := e.snapshot(status)
	r.IncompleteDetails = details
	r.Usage = usageOut(e.usage)
	name := "response.completed"
	if status == "incomplete" {
		name = "response.incomplete"
	}
	return e.emit(name, respBody{r})
}

// fail ends the stream with an error event and, once the response was
// announced, response.failed.
func (e *StreamEncoder) fail(err *llm.Error) error {
	e.done = true
	code := streamErrorCode(err)
	if werr := e.emit("error", errorEventBody{Code: code, Message: err.Message}); werr != nil || !e.started {
		return werr
	}
	r := e.snapshot("failed")
	r.Error = &ResponseError{Code: code, Message: err.Message}
	r.Usage = usageOut(e.usage)
	return e.emit("response.failed", respBody{r})
}

// Close ends the stream. A stream that saw neither Stop nor Error (the
// canonical stream broke off) ends as failed, so the client does not take
// a truncated answer for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done {
		return nil
	}
	return e.fail(&llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream ended before the response was complete", InStream: true})
}
