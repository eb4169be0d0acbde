package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	// LegacyMaxTokens sends max_tokens instead of max_completion_tokens,
	// for OpenAI-compatible servers that only know the older field.
	LegacyMaxTokens bool
	// Native passes the client's unknown fields (Request.Extra) through:
	// set only when the client itself spoke this format.
	Native bool
}

// EncodeRequest renders a canonical request for an OpenAI-format upstream.
// Streaming requests always ask for usage.
func EncodeRequest(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	out := ChatRequest{Model: model, ParallelToolCalls: r.ParallelToolCalls, Temperature: r.Temperature, TopP: r.TopP, Seed: r.Seed,
		PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty, User: r.User, Stream: r.Stream}
	if r.Stream {
		out.StreamOptions = &StreamOptions{IncludeUsage: true}
	}
	if opts.LegacyMaxTokens {
		out.MaxTokens = r.MaxTokens
	} else {
		out.MaxCompletionTokens = r.MaxTokens
	}
	if len(r.Stop) > 0 {
		out.Stop, _ = json.Marshal(r.Stop)
	}
	if r.Reasoning != nil && r.Reasoning.Enabled {
		out.ReasoningEffort = r.Reasoning.Effort
		if out.ReasoningEffort == "" {
			out.ReasoningEffort = "medium"
		}
	}
	if rf := r.ResponseFormat; rf != nil {
		out.ResponseFormat = &ResponseFormat{Type: rf.Type}
		if rf.Type == "json_schema" {
			out.ResponseFormat.JSONSchema = &JSONSchema{Name: rf.Name, Schema: rf.Schema, Strict: rf.Strict}
		}
	}
	for _, t := range r.Tools {
		out.Tools = append(out.Tools, ChatTool{Type: "function", Function: FunctionSpec{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}})
	}
	if tc := r.ToolChoice; tc != nil {
		if tc.Mode == llm.ToolChoiceTool {
			out.ToolChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}})
		} else {
			out.ToolChoice, _ = json.Marshal(tc.Mode)
		}
		if tc.DisableParallel {
			f := false
			out.ParallelToolCalls = &f
		}
	}
	if len(r.System) > 0 {
		content, err := encodeContent(r.System)
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, ChatMessage{Role: "system", Content: content})
	}
	for _, m := range r.Messages {
		switch m.Role {
		case llm.RoleTool:
			for _, p := range m.Parts {
				if p.ToolResult == nil {
					continue
				}
				content, err := encodeContent(p.ToolResult.Content)
				if err != nil {
					return nil, err
				}
				if len(content) == 0 || string(content) == "null" {
					content = json.RawMessage(`""`)
				}
				out.Messages = append(out.Messages, ChatMessage{Role: "tool", ToolCallID: p.ToolResult.CallID, Content: content})
			}
		case llm.RoleAssistant:
			msg := ChatMessage{Role: "assistant"}
			var rest []llm.Part
			for _, p := range m.Parts {
				switch p.Type {
				case llm.PartToolCall:
					msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: p.ToolCall.ID, Type: "function",
						Function: FunctionCall{Name: p.ToolCall.Name, Arguments: string(llm.NormalizeArguments(string(p.ToolCall.Arguments)))}})
				case llm.PartThinking, llm.PartRedactedThinking:
					// Chat Completions has no slot for reasoning sent back.
				default:
					rest = append(rest, p)
				}
			}
			content, err := encodeContent(rest)
			if err != nil {
				return nil, err
			}
			if len(content) == 0 {
				content = json.RawMessage("null")
			}
			msg.Content = content
			out.Messages = append(out.Messages, msg)
		default:
			content, err := encodeContent(m.Parts)
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, ChatMessage{Role: "user", Content: content, Name: m.Name})
		}
	}
	b, err := json.Marshal(out)
	if err != nil || !opts.Native || len(r.Extra) == 0 {
		return b, err
	}
	var merged map[string]json.RawMessage
	if err := json.Unmarshal(b, &merged); err != nil {
		return nil, err
	}
	for k, v := range r.Extra {
		if _, set := merged[k]; !set {
			merged[k] = v
		}
	}
	return json.Marshal(merged)
}

// encodeContent renders parts as a string when they are plain text, else
// as an array of content parts.
func encodeContent(parts []llm.Part) (json.RawMessage, error) {
	if len(parts) == 0 {
		return nil, nil
	}
	plain := true
	for _, p := range parts {
		if p.Type != llm.PartText || p.CacheControl != nil {
			plain = false
		}
	}
	if plain {
		var b strings.Builder
		for i, p := range parts {
			if i > 0 {
				b.WriteString("\n\n")
			}
			b.WriteString(p.Text)
		}
		return json.Marshal(b.String())
	}
	var out []ContentPart
	for _, p := range parts {
		switch p.Type {
		case llm.PartText:
			out = append(out, ContentPart{Type: "text", Text: p.Text})
		case llm.PartImage:
			u := p.Media.URL
			if u == "" {
				u = "data:" + p.Media.MIMEType + ";base64," + base64.StdEncoding.EncodeToString(p.Media.Data)
			}
			out = append(out, ContentPart{Type: "image_url", ImageURL: &ImageURL{URL: u, Detail: p.Media.Detail}})
		case llm.PartAudio:
			out = append(out, ContentPart{Type: "input_audio", InputAudio: &InputAudio{Data: base64.StdEncoding.EncodeToString(p.Media.Data), Format: strings.TrimPrefix(p.Media.MIMEType, "audio/")}})
		case llm.PartThinking, llm.PartRedactedThinking:
		default:
			return nil, &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf("content of type %s cannot be sent to an OpenAI-format provider", p.Type)}
		}
	}
	return json.Marshal(out)
}

func stopReason(fr string) llm.StopReason {
	switch fr {
	case "length":
		return llm.StopMaxTokens
	case "tool_calls", "function_call":
		return llm.StopToolUse
	case "content_filter":
		return llm.StopContentFilter
	}
	return llm.StopEnd
}

func usageIn(u *Usage) llm.Usage {
	if u == nil {
		return llm.Usage{}
	}
	out := llm.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		out.CacheReadTokens = d.CachedTokens
		out.InputTokens -= d.CachedTokens // canonical input excludes cache reads
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = d.ReasoningTokens
	}
	return out
}

// DecodeResponse reads a chat.completion from an upstream.
func DecodeResponse(body []byte) (*llm.Response, error) {
	var in ChatResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "not a chat completion"}
	}
	if len(in.Choices) == 0 || in.Choices[0].Message == nil {
		return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "a chat completion without choices"}
	}
	m := in.Choices[0].Message
	r := &llm.Response{ID: in.ID, Model: in.Model, Usage: usageIn(in.Usage), Created: time.Unix(in.Created, 0).UTC()}
	if m.ReasoningContent != nil && *m.ReasoningContent != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartThinking, Text: *m.ReasoningContent})
	}
	if m.Content != nil && *m.Content != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartText, Text: *m.Content})
	}
	for _, tc := range m.ToolCalls {
		r.Content = append(r.Content, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: llm.NormalizeArguments(tc.Function.Arguments)}})
	}
	if in.Choices[0].FinishReason != nil {
		r.StopReason = stopReason(*in.Choices[0].FinishReason)
	}
	return r, nil
}

// DecodeError maps an upstream error response.
func DecodeError(status int, header http.Header, body []byte) *llm.Error {
	e := &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: upstreamhttp.StatusText(status)}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
		e.Message = eb.Error.Message
		if eb.Error.Code != nil {
			e.Code = *eb.Error.Code
		}
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

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

// Client calls an OpenAI or OpenAI-compatible upstream.
type Client struct {
	BaseURL  string // e.g. https://api.openai.com/v1
	APIKey   string
	HTTP     *http.Client
	Headers  map[string]string
	Options  EncodeOptions
	Provider string
}

func (c *Client) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := upstreamhttp.NewRequest(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(body), c.Provider)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	return upstreamhttp.Send(c.HTTP, req, c.Provider, DecodeError)
}

// Chat sends a non-streaming request.
func (c *Client) Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error) {
	rr := *r
	rr.Stream = false
	body, err := EncodeRequest(&rr, model, c.opts(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	b, err := upstreamhttp.ReadBody(c.HTTP, resp, c.Provider)
	if err != nil {
		return nil, err
	}
	out, err := DecodeResponse(b)
	if err != nil {
		if le, ok := err.(*llm.Error); ok {
			return nil, upstreamhttp.Unreadable(c.Provider, le)
		}
		return nil, err
	}
	return out, nil
}

// Stream sends a streaming request.
func (c *Client) Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error) {
	rr := *r
	rr.Stream = true
	body, err := EncodeRequest(&rr, model, c.opts(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.post(upstreamhttp.Streamed(ctx), "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	return newStreamDecoder(resp.Body, c.Provider), nil
}

// WithNative marks ctx as carrying a request from an OpenAI-dialect client,
// so unknown client fields are passed through to OpenAI-format upstreams.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectOpenAI)
}

func (c *Client) opts(ctx context.Context) EncodeOptions {
	o := c.Options
	if llm.DialectOf(ctx) == llm.DialectOpenAI {
		o.Native = true
	}
	return o
}
