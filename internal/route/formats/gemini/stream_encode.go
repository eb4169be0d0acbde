package gemini

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

// StreamEncoder writes canonical events as a Gemini stream: each chunk is
// a whole GenerateContentResponse holding the new parts. Text and thought
// deltas are sent as they come (one chunk behind, so the last chunk can
// carry finishReason and usageMetadata as Gemini's does); a function call
// is sent whole, in one chunk, when its part stops. An error after the
// stream started is sent as a chunk holding Google's error object.
type StreamEncoder struct {
	w         io.Writer
	flushOut  func() // pushes each chunk to the client
	array     bool   // JSON array framing instead of SSE
	wrote     bool
	id, model string
	usage     llm.Usage
	kinds     map[int]llm.PartType
	calls     map[int]*pendingCall
	pending   *GenerateContentResponse
	done      bool
}

type pendingCall struct {
	call FunctionCall
	args strings.Builder
	sig  string
}

// NewStreamEncoder writes SSE (`data: {…}\r\n\r\n` per chunk), the form
// Gemini uses with ?alt=sse.
func NewStreamEncoder(w io.Writer) *StreamEncoder {
	return &StreamEncoder{w: w, flushOut: sse.Flusher(w), kinds: map[int]llm.PartType{}, calls: map[int]*pendingCall{}}
}

// NewArrayStreamEncoder writes the form Gemini uses without alt=sse: one
// JSON array whose elements are the chunks, written as they come.
func NewArrayStreamEncoder(w io.Writer) *StreamEncoder {
	e := NewStreamEncoder(w)
	e.array = true
	return e
}

func (e *StreamEncoder) write(b []byte) error {
	var s string
	switch {
	case !e.array:
		s = "data: " + string(b) + "\r\n\r\n"
	case !e.wrote:
		s = "[" + string(b)
	default:
		s = ",\r\n" + string(b)
	}
	e.wrote = true
	if _, err := io.WriteString(e.w, s); err != nil {
		return err
	}
	e.flushOut()
	return nil
}

func (e *StreamEncoder) flush() error {
	if e.pending == nil {
		return nil
	}
	b, err := json.Marshal(e.pending)
	e.pending = nil
	if err != nil {
		return err
	}
	return e.write(b)
}

// queue makes part the content of the next chunk, sending the previous.
func (e *StreamEncoder) queue(p Part) error {
	if err := e.flush(); err != nil {
		return err
	}
	e.pending = &GenerateContentResponse{Candidates: []Candidate{{Content: &Content{Role: "model", Parts: []Part{p}}}},
		ModelVersion: e.model, ResponseID: e.id}
	return nil
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
	case llm.EventPartStart:
		if ev.Part == nil {
			return nil
		}
		e.kinds[ev.Index] = ev.Part.Type
		switch ev.Part.Type {
		case llm.PartToolCall:
			pc := &pendingCall{sig: ev.Part.Signature}
			if tc := ev.Part.ToolCall; tc != nil {
				pc.call = FunctionCall{ID: tc.ID, Name: tc.Name}
				pc.args.Write(tc.Arguments)
			}
			e.calls[ev.Index] = pc
		case llm.PartImage, llm.PartAudio, llm.PartFile:
			if ev.Part.Media != nil {
				return e.queue(mediaOut(*ev.Part))
			}
		}
	case llm.EventDelta:
		if pc := e.calls[ev.Index]; pc != nil {
			pc.args.WriteString(ev.Delta.Arguments)
			pc.sig += ev.Delta.Signature
			return nil
		}
		var p Part
		switch e.kinds[ev.Index] {
		case llm.PartText:
			p = Part{Text: str(ev.Delta.Text)}
		case llm.PartThinking:
			p = Part{Text: str(ev.Delta.Text), Thought: true}
		default:
			return nil
		}
		if validSignature(ev.Delta.Signature) {
			p.ThoughtSignature = ev.Delta.Signature
		}
		if ev.Delta.Text == "" && p.ThoughtSignature == "" {
			return nil
		}
		return e.queue(p)
	case llm.EventPartStop:
		pc := e.calls[ev.Index]
		if pc == nil {
			return nil
		}
		delete(e.calls, ev.Index)
		pc.call.Args = argsObject([]byte(pc.args.String()))
		call := pc.call
		p := Part{FunctionCall: &call}
		if validSignature(pc.sig) {
			p.ThoughtSignature = pc.sig
		}
		return e.queue(p)
	case llm.EventUsage:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventStop:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		if e.pending == nil {
			e.pending = &GenerateContentResponse{Candidates: []Candidate{{Content: &Content{Role: "model", Parts: []Part{}}}},
				ModelVersion: e.model, ResponseID: e.id}
		}
		e.pending.Candidates[0].FinishReason = finishReasonOut(ev.StopReason)
		e.pending.UsageMetadata = usageOut(e.usage)
		e.done = true
		if err := e.flush(); err != nil {
			return err
		}
		return e.end()
	case llm.EventError:
		if err := e.flush(); err != nil {
			return err
		}
		e.done = true
		err := ev.Err
		if err == nil {
			err = &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream failed"}
		}
		_, body := EncodeError(err)
		if werr := e.write(body); werr != nil {
			return werr
		}
		return e.end()
	}
	return nil
}

func (e *StreamEncoder) end() error {
	if !e.array {
		return nil
	}
	s := "]"
	if !e.wrote {
		s = "[]"
	}
	_, err := io.WriteString(e.w, s)
	return err
}

// Close ends a stream that stopped without Stop or Error with an error
// chunk, so a truncated answer is not mistaken for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done {
		return nil
	}
	return e.Encode(llm.Event{Type: llm.EventError, Err: &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer,
		Message: "upstream stream ended unexpectedly", InStream: true}})
}
