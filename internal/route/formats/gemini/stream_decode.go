package gemini

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// maxEventLine bounds one SSE line of an upstream stream.
const maxEventLine = 16 << 20

// chunkSource yields the JSON of one stream chunk at a time, io.EOF at
// the end.
type chunkSource interface {
	next() ([]byte, error)
}

// sseSource reads the data of SSE events (event names, comments and
// other fields ignored).
type sseSource struct{ r *sse.Reader }

func (s *sseSource) next() ([]byte, error) {
	ev, err := s.r.Next()
	return ev.Data, err
}

// sliceSource replays chunks already read (a JSON array answer).
type sliceSource struct{ chunks []json.RawMessage }

func (s *sliceSource) next() ([]byte, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}

// streamDecoder turns Gemini stream chunks into canonical events.
type streamDecoder struct {
	body     io.Closer
	src      chunkSource
	provider string

	queue   []llm.Event
	done    bool
	started bool
	open    int // canonical index of the open text or thought part, -1 none
	kind    llm.PartType
	signed  bool // the open part already carries a signature
	next    int
	ans     answer // mints call ids as DecodeResponse does
	finish  string
	usage   *UsageMetadata
}

// NewStreamDecoder reads a Gemini SSE stream (?alt=sse: each event a whole
// GenerateContentResponse, no end sentinel) and yields canonical events:
// Start from the first chunk (id, model, input usage); consecutive text or
// thought parts as deltas of one part (a new part after a signature);
// each functionCall as a whole part (PartStart, one arguments delta with
// its signature, PartStop); at the end of the body, Stop with the finish
// reason of the last candidate (STOP with calls is tool use) and the last
// usageMetadata. An error object in the stream, a blocked prompt, a
// safety block before any content, or a body that ends without a finish
// reason ends the stream with an Error event (InStream). Close closes r.
func NewStreamDecoder(r io.ReadCloser) llm.Stream {
	return newStreamDecoder(r, "")
}

func newStreamDecoder(r io.ReadCloser, provider string) *streamDecoder {
	return &streamDecoder{body: r, src: &sseSource{r: sse.NewReader(r, maxEventLine)}, provider: provider, open: -1}
}

// Next returns the next canonical event, or io.EOF after the last.
func (d *streamDecoder) Next() (llm.Event, error) {
	for len(d.queue) == 0 {
		if d.done {
			return llm.Event{}, io.EOF
		}
		data, err := d.src.next()
		switch {
		case err == io.EOF:
			d.end()
		case err != nil:
			d.fail(&llm.Error{Status: 0, Type: llm.ErrServer, Message: upstreamhttp.DescribeRead(err)})
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

func (d *streamDecoder) emit(ev llm.Event) { d.queue = append(d.queue, ev) }

func (d *streamDecoder) fail(e *llm.Error) {
	d.queue = append(d.queue, llm.Event{Type: llm.EventError, Err: upstreamhttp.StreamFailed(d.provider, e)})
	d.done = true
}

func (d *streamDecoder) closeOpen() {
	if d.open >= 0 {
		d.emit(llm.Event{Type: llm.EventPartStop, Index: d.open})
		d.open = -1
	}
}

func (d *streamDecoder) handle(data []byte) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "[DONE]" {
		return
	}
	var probe struct {
		Error *ErrorDetail `json:"error"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.Error != nil {
		d.fail(googleError(*probe.Error, 0))
		return
	}
	var c GenerateContentResponse
	if err := json.Unmarshal(data, &c); err != nil {
		d.fail(streamError("malformed chunk: " + err.Error()))
		return
	}
	if !d.started {
		d.started = true
		d.ans.respID = c.ResponseID
		u := usageIn(c.UsageMetadata)
		d.emit(llm.Event{Type: llm.EventStart, ID: c.ResponseID, Model: c.ModelVersion,
			Usage: &llm.Usage{InputTokens: u.InputTokens, CacheReadTokens: u.CacheReadTokens}})
	}
	if c.UsageMetadata != nil {
		d.usage = c.UsageMetadata
	}
	if len(c.Candidates) == 0 {
		if pf := c.PromptFeedback; pf != nil && pf.BlockReason != "" {
			d.fail(blockedError(pf.BlockReason, pf.BlockReasonMessage))
		}
		return
	}
	cand := c.Candidates[0]
	if cand.Content != nil {
		for _, p := range cand.Content.Parts {
			d.part(p)
		}
	}
	if cand.FinishReason != "" {
		d.finish = cand.FinishReason
		if d.next == 0 && blockedFinish(cand.FinishReason) {
			d.fail(blockedError(cand.FinishReason, cand.FinishMessage))
		}
	}
}

func (d *streamDecoder) part(p Part) {
	switch {
	case p.FunctionCall != nil:
		d.closeOpen()
		d.ans.parts = nil
		d.ans.add(p)
		tc := d.ans.parts[0].ToolCall
		idx := d.next
		d.next++
		d.emit(llm.Event{Type: llm.EventPartStart, Index: idx, Part: &llm.Part{Type: llm.PartToolCall,
			ToolCall: &llm.ToolCall{ID: tc.ID, Name: tc.Name}}})
		d.emit(llm.Event{Type: llm.EventDelta, Index: idx, Delta: llm.Delta{Arguments: string(tc.Arguments), Signature: p.ThoughtSignature}})
		d.emit(llm.Event{Type: llm.EventPartStop, Index: idx})
	case p.InlineData != nil || p.FileData != nil:
		part, err := mediaPart(p, "part")
		if err != nil {
			return
		}
		d.closeOpen()
		idx := d.next
		d.next++
		d.emit(llm.Event{Type: llm.EventPartStart, Index: idx, Part: &part})
		d.emit(llm.Event{Type: llm.EventPartStop, Index: idx})
	case p.Text != nil || p.ThoughtSignature != "":
		text := deref(p.Text)
		if text == "" && p.ThoughtSignature == "" {
			return
		}
		typ := llm.PartText
		if p.Thought {
			typ = llm.PartThinking
		}
		if d.open < 0 || d.kind != typ || d.signed {
			d.closeOpen()
			d.open, d.kind, d.signed = d.next, typ, false
			d.next++
			d.emit(llm.Event{Type: llm.EventPartStart, Index: d.open, Part: &llm.Part{Type: typ}})
		}
		if p.ThoughtSignature != "" {
			d.signed = true
		}
		d.emit(llm.Event{Type: llm.EventDelta, Index: d.open, Delta: llm.Delta{Text: text, Signature: p.ThoughtSignature}})
	}
}

// end finishes the stream at the end of the body.
func (d *streamDecoder) end() {
	switch {
	case !d.started:
		d.fail(streamError("it carried no response"))
	case d.finish == "":
		d.fail(streamError("it ended before a finish reason"))
	default:
		d.closeOpen()
		u := usageIn(d.usage)
		d.emit(llm.Event{Type: llm.EventStop, StopReason: stopReasonIn(d.finish, d.ans.calls > 0), Usage: &u})
		d.done = true
	}
}

// replayChunks streams an answer that arrived as JSON: one
// GenerateContentResponse or an array of them.
func replayChunks(body []byte, provider string) (llm.Stream, error) {
	body = bytes.TrimSpace(body)
	var chunks []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &chunks); err != nil {
			return nil, upstreamError("not a stream array")
		}
	} else {
		chunks = []json.RawMessage{body}
	}
	return &streamDecoder{body: io.NopCloser(nil), src: &sliceSource{chunks: chunks}, provider: provider, open: -1}, nil
}
