package ollama

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// EncodeOptions tune requests for one upstream.
type EncodeOptions struct {
	// Native passes the client's unknown fields and options
	// (Request.Extra) through: set only when the client spoke Ollama.
	Native bool
}

// EncodeRequest renders a canonical request for an Ollama upstream's
// POST /api/chat. stream is always sent explicitly.
func EncodeRequest(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	stream := r.Stream
	out := ChatRequest{Model: model, Stream: &stream}
	o := Options{Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK, NumPredict: r.MaxTokens, Stop: r.Stop, Seed: r.Seed,
		PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty}
	ob, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if extra := r.Extra["options"]; opts.Native && !isNull(extra) {
		ob, err = mergeObjects(ob, extra)
		if err != nil {
			return nil, invalid("options: must be an object")
		}
	}
	if string(ob) != "{}" {
		out.Options = ob
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			out.Format = json.RawMessage(`"json"`)
		case "json_schema":
			if isNull(rf.Schema) {
				out.Format = json.RawMessage(`"json"`)
			} else {
				out.Format = rf.Schema
			}
		}
	}
	if rs := r.Reasoning; rs != nil {
		out.Think = encodeThink(rs, model, opts.Native)
	}
	for _, t := range r.Tools {
		params := t.Parameters
		if isNull(params) {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, Tool{Type: "function", Function: ToolFunction{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	if len(r.System) > 0 {
		m := Message{Role: "system", Content: joinText(r.System, llm.PartText, "\n\n")}
		images, err := encodeImages(r.System)
		if err != nil {
			return nil, err
		}
		m.Images = images
		out.Messages = append(out.Messages, m)
	}
	for i, m := range r.Messages {
		switch m.Role {
		case llm.RoleTool:
			for _, p := range m.Parts {
				if p.ToolResult == nil {
					continue
				}
				tr := p.ToolResult
				images, err := encodeImages(tr.Content)
				if err != nil {
					return nil, err
				}
				name := tr.Name
				if name == "" {
					name = callName(r.Messages[:i], tr.CallID)
				}
				out.Messages = append(out.Messages, Message{Role: "tool", Content: joinText(tr.Content, llm.PartText, "\n\n"), Images: images,
					ToolName: name, ToolCallID: tr.CallID})
			}
		case llm.RoleAssistant:
			msg := Message{Role: "assistant", Content: joinText(m.Parts, llm.PartText, ""), Thinking: joinText(m.Parts, llm.PartThinking, "")}
			for _, p := range m.Parts {
				switch {
				case p.Type == llm.PartToolCall && p.ToolCall != nil:
					msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: p.ToolCall.ID, Function: ToolCallFunction{Index: len(msg.ToolCalls),
						Name: p.ToolCall.Name, Arguments: argumentsObject(p.ToolCall.Arguments)}})
				case p.Type == llm.PartImage || p.Type == llm.PartAudio || p.Type == llm.PartFile:
					return nil, invalid("messages[%d]: %s content in an assistant message cannot be sent to an Ollama provider", i, p.Type)
				}
			}
			out.Messages = append(out.Messages, msg)
		default:
			images, err := encodeImages(m.Parts)
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, Message{Role: "user", Content: joinText(m.Parts, llm.PartText, "\n\n"), Images: images})
		}
	}
	b, err := json.Marshal(out)
	if err != nil || !opts.Native || len(r.Extra) == 0 {
		return b, err
	}
	extra := map[string]json.RawMessage{}
	for k, v := range r.Extra {
		if k != "options" {
			extra[k] = v
		}
	}
	eb, _ := json.Marshal(extra)
	return mergeObjects(b, eb)
}

// mergeObjects adds the keys of extra that base lacks.
func mergeObjects(base, extra []byte) ([]byte, error) {
	var b, e map[string]json.RawMessage
	if err := json.Unmarshal(base, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(extra, &e); err != nil {
		return nil, err
	}
	if b == nil {
		b = map[string]json.RawMessage{}
	}
	for k, v := range e {
		if _, set := b[k]; !set {
			b[k] = v
		}
	}
	return json.Marshal(b)
}

// encodeThink maps reasoning onto think. Ollama accepts effort levels only
// for gpt-oss models, so other dialects' clients get true instead.
func encodeThink(rs *llm.Reasoning, model string, native bool) json.RawMessage {
	if !rs.Enabled {
		return json.RawMessage("false")
	}
	level := ""
	switch rs.Effort {
	case "minimal", "low":
		level = "low"
	case "medium":
		level = "medium"
	case "high", "xhigh":
		level = "high"
	}
	if level != "" && (native || strings.Contains(strings.ToLower(model), "gpt-oss")) {
		return json.RawMessage(strconv.Quote(level))
	}
	return json.RawMessage("true")
}

// encodeImages renders the images of parts as base64; other media cannot
// be sent to Ollama.
func encodeImages(parts []llm.Part) ([]string, error) {
	var out []string
	for _, p := range parts {
		switch p.Type {
		case llm.PartImage:
			if p.Media == nil || len(p.Media.Data) == 0 {
				return nil, invalid("an image URL cannot be sent to an Ollama provider: send the image inline (base64)")
			}
			out = append(out, base64.StdEncoding.EncodeToString(p.Media.Data))
		case llm.PartAudio, llm.PartFile:
			return nil, invalid("content of type %s cannot be sent to an Ollama provider", p.Type)
		}
	}
	return out, nil
}

// callName finds the function name of an earlier call.
func callName(msgs []llm.Message, id string) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		for _, p := range msgs[i].Parts {
			if p.ToolCall != nil && p.ToolCall.ID == id {
				return p.ToolCall.Name
			}
		}
	}
	return ""
}

// requestMinter prepares an idMinter that continues the count of req's
// tool calls, so ids minted for an answer match those DecodeRequest would
// mint for the same history.
func requestMinter(req *llm.Request) *idMinter {
	m := &idMinter{used: map[string]bool{}}
	if req == nil {
		return m
	}
	for _, msg := range req.Messages {
		for _, p := range msg.Parts {
			if p.ToolCall != nil {
				m.n++
				m.used[p.ToolCall.ID] = true
			}
		}
	}
	return m
}

func upstreamError(msg string) *llm.Error {
	return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: msg}
}

// unreadable is the error for an answer that is not one.
func unreadable(msg string) *llm.Error { return upstreamhttp.Unreadable("", upstreamError(msg)) }

// DecodeResponse reads a non-streamed /api/chat answer. An upstream that
// streamed anyway (NDJSON) is folded.
func DecodeResponse(body []byte) (*llm.Response, error) {
	return decodeResponse(body, nil)
}

func decodeResponse(body []byte, mint *idMinter) (*llm.Response, error) {
	if mint == nil {
		mint = &idMinter{}
	}
	var in ChatResponse
	if err := json.Unmarshal(body, &in); err != nil {
		if bytes.Count(bytes.TrimSpace(body), []byte("\n")) > 0 {
			r, err := llm.Collect(newStreamDecoder(io.NopCloser(bytes.NewReader(body)), mint, ""))
			var le *llm.Error
			if err != nil && !errors.As(err, &le) {
				return nil, unreadable("not an Ollama chat answer")
			}
			return r, err
		}
		return nil, unreadable("not an Ollama chat answer")
	}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e := upstreamError(eb.Error)
		if eb.Status >= 400 {
			e.Status, e.Type = eb.Status, llm.TypeForStatus(eb.Status)
		}
		return nil, e
	}
	r := &llm.Response{ID: responseID(in.CreatedAt), Model: in.Model, Created: in.CreatedAt.UTC(),
		Usage: llm.Usage{InputTokens: in.PromptEvalCount, OutputTokens: in.EvalCount}}
	if in.Message.Thinking != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartThinking, Text: in.Message.Thinking})
	}
	if in.Message.Content != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartText, Text: in.Message.Content})
	}
	for _, tc := range in.Message.ToolCalls {
		args, _ := argumentsText(tc.Function.Arguments)
		r.Content = append(r.Content, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: mint.next(tc.ID), Name: tc.Function.Name, Arguments: args}})
	}
	r.StopReason = stopReason(in.DoneReason, len(in.Message.ToolCalls) > 0)
	return r, nil
}

// DecodeError maps an upstream error response ({"error":"…"}; any other
// body is summarised by its status, upstreamhttp.StatusText).
func DecodeError(status int, header http.Header, body []byte) *llm.Error {
	e := &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: upstreamhttp.StatusText(status)}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = eb.Error
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

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
