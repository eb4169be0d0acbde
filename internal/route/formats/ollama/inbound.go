package ollama

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/sse"
	"github.com/omniedge/omni/internal/route/llm"
)

var knownFields = map[string]bool{"model": true, "messages": true, "tools": true, "stream": true, "format": true, "options": true, "think": true}

// DecodeRequest turns a client's /api/chat body into the canonical model.
// Failures are *llm.Error 400 naming the field.
func DecodeRequest(body []byte) (*llm.Request, error) {
	var in ChatRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("request body is not a valid Ollama chat request: %v", err)
	}
	if in.Model == "" {
		return nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", in.Model); err != nil {
		return nil, err
	}
	if len(in.Messages) == 0 {
		return nil, invalid("messages: at least one message is required")
	}
	r := &llm.Request{Model: in.Model, Stream: in.Stream == nil || *in.Stream}
	if err := decodeFormat(r, in.Format); err != nil {
		return nil, err
	}
	if err := decodeThink(r, in.Think); err != nil {
		return nil, err
	}
	if err := decodeOptions(r, in.Options); err != nil {
		return nil, err
	}
	for i, t := range in.Tools {
		if t.Type != "" && t.Type != "function" || t.Function.Name == "" {
			return nil, invalid("tools[%d]: only function tools with a name are supported", i)
		}
		params := t.Function.Parameters
		if isNull(params) {
			params = nil
		} else if p := bytes.TrimSpace(params); p[0] != '{' || !json.Valid(p) {
			return nil, invalid("tools[%d].function.parameters: must be a JSON schema object", i)
		}
		r.Tools = append(r.Tools, llm.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: params})
	}
	if err := decodeMessages(r, in.Messages); err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		for k, v := range raw {
			if !knownFields[k] {
				if r.Extra == nil {
					r.Extra = map[string]json.RawMessage{}
				}
				r.Extra[k] = v
			}
		}
	}
	return r, nil
}

func decodeFormat(r *llm.Request, raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	t := bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(t, &s) == nil {
		switch s {
		case "":
			return nil
		case "json":
			r.ResponseFormat = &llm.ResponseFormat{Type: "json_object"}
			return nil
		}
		return invalid("format: %q is not \"json\" or a JSON schema object", s)
	}
	var b bytes.Buffer
	if t[0] != '{' || json.Compact(&b, t) != nil {
		return invalid("format: must be \"json\" or a JSON schema object")
	}
	r.ResponseFormat = &llm.ResponseFormat{Type: "json_schema", Schema: b.Bytes()}
	return nil
}

func decodeThink(r *llm.Request, raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var on bool
	if json.Unmarshal(raw, &on) == nil {
		r.Reasoning = &llm.Reasoning{Enabled: on}
		return nil
	}
	var level string
	if json.Unmarshal(raw, &level) == nil {
		switch level {
		case "low", "medium", "high":
			r.Reasoning = &llm.Reasoning{Enabled: true, Effort: level}
			return nil
		}
	}
	return invalid("think: must be true, false, \"low\", \"medium\" or \"high\"")
}

// decodeOptions maps the options the canonical model knows; the others
// (num_ctx, repeat_penalty, a negative num_predict, …) are kept in
// Extra["options"] for Ollama upstreams.
func decodeOptions(r *llm.Request, raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var opts map[string]json.RawMessage
	if err := json.Unmarshal(raw, &opts); err != nil {
		return invalid("options: must be an object")
	}
	rest := map[string]json.RawMessage{}
	for k, v := range opts {
		if isNull(v) {
			continue
		}
		var err error
		switch k {
		case "temperature":
			r.Temperature, err = optFloat(k, v)
		case "top_p":
			r.TopP, err = optFloat(k, v)
		case "presence_penalty":
			r.PresencePenalty, err = optFloat(k, v)
		case "frequency_penalty":
			r.FrequencyPenalty, err = optFloat(k, v)
		case "top_k":
			var n *int64
			if n, err = optInt(k, v); err == nil {
				i := int(*n)
				r.TopK = &i
			}
		case "seed":
			r.Seed, err = optInt(k, v)
		case "num_predict":
			var n *int64
			if n, err = optInt(k, v); err == nil {
				if *n < 0 { // -1 unlimited, -2 fill the context: no canonical limit
					rest[k] = v
					continue
				}
				i := int(*n)
				r.MaxTokens = &i
			}
		case "stop":
			var one string
			if json.Unmarshal(v, &one) == nil {
				r.Stop = []string{one}
			} else if json.Unmarshal(v, &r.Stop) != nil {
				err = invalid("options.stop: must be a string or an array of strings")
			}
		default:
			rest[k] = v
		}
		if err != nil {
			return err
		}
	}
	if len(rest) > 0 {
		b, _ := json.Marshal(rest)
		r.Extra = map[string]json.RawMessage{"options": b}
	}
	return nil
}

func optFloat(k string, v json.RawMessage) (*float64, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return nil, invalid("options.%s: must be a number", k)
	}
	return &f, nil
}

func optInt(k string, v json.RawMessage) (*int64, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return nil, invalid("options.%s: must be an integer", k)
	}
	n := int64(f)
	return &n, nil
}

// callRec is a tool call of the conversation, for pairing results.
type callRec struct {
	id, name string
	answered bool
	stale    bool // from an assistant turn before the latest one
}

func decodeMessages(r *llm.Request, msgs []Message) error {
	mint := &idMinter{used: map[string]bool{}}
	for _, m := range msgs {
		for _, tc := range m.ToolCalls {
			if tc.ID != "" {
				mint.used[tc.ID] = true
			}
		}
	}
	var calls []*callRec
	for i, m := range msgs {
		role := strings.ToLower(m.Role)
		var images []llm.Part
		for j, s := range m.Images {
			media, err := decodeImage(s)
			if err != nil {
				return invalid("messages[%d].images[%d]: %v", i, j, err)
			}
			images = append(images, llm.Part{Type: llm.PartImage, Media: media})
		}
		if len(images) > 0 && role != "user" && role != "tool" {
			return invalid("messages[%d].images: images are accepted in user and tool messages only", i)
		}
		if len(m.ToolCalls) > 0 && role != "assistant" {
			return invalid("messages[%d].tool_calls: only assistant messages call tools", i)
		}
		switch role {
		case "system":
			if m.Content != "" {
				r.System = append(r.System, llm.Part{Type: llm.PartText, Text: m.Content})
			}
		case "user":
			var parts []llm.Part
			if m.Content != "" || len(images) == 0 {
				parts = append(parts, llm.Part{Type: llm.PartText, Text: m.Content})
			}
			r.Messages = append(r.Messages, llm.Message{Role: llm.RoleUser, Parts: append(parts, images...)})
		case "assistant":
			var parts []llm.Part
			if m.Thinking != "" {
				parts = append(parts, llm.Part{Type: llm.PartThinking, Text: m.Thinking})
			}
			if m.Content != "" {
				parts = append(parts, llm.Part{Type: llm.PartText, Text: m.Content})
			}
			if len(m.ToolCalls) > 0 {
				for _, c := range calls {
					c.stale = true
				}
			}
			for j, tc := range m.ToolCalls {
				if tc.Function.Name == "" {
					return invalid("messages[%d].tool_calls[%d].function.name: required", i, j)
				}
				args, ok := argumentsText(tc.Function.Arguments)
				if !ok {
					return invalid("messages[%d].tool_calls[%d].function.arguments: must be a JSON object", i, j)
				}
				id := mint.next(tc.ID)
				calls = append(calls, &callRec{id: id, name: tc.Function.Name})
				parts = append(parts, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: id, Name: tc.Function.Name, Arguments: args}})
			}
			if len(parts) == 0 {
				parts = []llm.Part{{Type: llm.PartText, Text: ""}}
			}
			r.Messages = append(r.Messages, llm.Message{Role: llm.RoleAssistant, Parts: parts})
		case "tool":
			c := pairResult(calls, m.ToolCallID, m.ToolName)
			if c == nil {
				return invalid("messages[%d]: a tool message must answer a tool call of an earlier assistant message (tool_call_id %q, tool_name %q)", i, m.ToolCallID, m.ToolName)
			}
			c.answered = true
			var content []llm.Part
			if m.Content != "" {
				content = append(content, llm.Part{Type: llm.PartText, Text: m.Content})
			}
			content = append(content, images...)
			r.Messages = append(r.Messages, llm.Message{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult,
				ToolResult: &llm.ToolResult{CallID: c.id, Name: c.name, Content: content}}}})
		default:
			return invalid("messages[%d].role: %q is not system, user, assistant or tool", i, m.Role)
		}
	}
	return nil
}

// pairResult finds the call a tool message answers: by id, else the first
// unanswered call of the latest assistant turn with that name (else the
// latest call with that name), else the first unanswered call.
func pairResult(calls []*callRec, id, name string) *callRec {
	if id != "" {
		for _, c := range calls {
			if c.id == id {
				return c
			}
		}
	}
	if name != "" {
		for _, c := range calls {
			if !c.stale && !c.answered && c.name == name {
				return c
			}
		}
		for i := len(calls) - 1; i >= 0; i-- {
			if calls[i].name == name {
				return calls[i]
			}
		}
		return nil
	}
	for _, c := range calls {
		if !c.stale && !c.answered {
			return c
		}
	}
	return nil
}

// Timing is what the gateway measured of an answer, reported in Ollama's
// duration fields (nanoseconds).
type Timing struct {
	Total, PromptEval, Eval time.Duration
}

// EncodeResponse renders a canonical response as one /api/chat answer
// object with done:true.
func EncodeResponse(r *llm.Response) ([]byte, error) {
	return EncodeResponseTimed(r, Timing{})
}

// EncodeResponseTimed is EncodeResponse with measured durations.
func EncodeResponseTimed(r *llm.Response, t Timing) ([]byte, error) {
	return json.Marshal(chatResponse(r, t))
}

// chatResponse is the /api/chat answer object of a canonical response.
func chatResponse(r *llm.Response, t Timing) ChatResponse {
	msg := Message{Role: "assistant", Content: joinText(r.Content, llm.PartText, ""), Thinking: joinText(r.Content, llm.PartThinking, "")}
	for i, tc := range r.ToolCalls() {
		msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: tc.ID, Function: ToolCallFunction{Index: i, Name: tc.Name, Arguments: argumentsObject(tc.Arguments)}})
	}
	out := ChatResponse{Model: r.Model, CreatedAt: r.Created.UTC(), Message: msg, Done: true, DoneReason: doneReason(r.StopReason),
		PromptEvalCount: r.Usage.PromptTokens(), EvalCount: r.Usage.OutputTokens,
		TotalDuration: int64(t.Total), PromptEvalDuration: int64(t.PromptEval), EvalDuration: int64(t.Eval)}
	return out
}

// EncodeError renders an error in Ollama's shape: {"error":"…"}.
func EncodeError(e *llm.Error) (int, []byte) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	b, _ := json.Marshal(ErrorBody{Error: msg})
	return status, b
}

// StreamEncoder writes canonical events as Ollama NDJSON.
type StreamEncoder struct {
	w            io.Writer
	flush        func() // pushes each line to the client
	model        string
	now          func() time.Time
	start, first time.Time
	kinds        map[int]llm.PartType
	calls        map[int]*openCall
	nTools       int
	usage        llm.Usage
	done         bool
	generate     bool // /api/generate lines (response, not message)
}

type openCall struct {
	id, name string
	args     strings.Builder
}

// NewStreamEncoder writes to w. model names the model in every line (the
// name the client asked for); empty means the upstream's. now stamps
// created_at and measures the durations (nil means time.Now).
func NewStreamEncoder(w io.Writer, model string, now func() time.Time) *StreamEncoder {
	if now == nil {
		now = time.Now
	}
	return &StreamEncoder{w: w, flush: sse.Flusher(w), model: model, now: now, start: now(), kinds: map[int]llm.PartType{}, calls: map[int]*openCall{}}
}

func (e *StreamEncoder) line(v any) error {
	if c, ok := v.(ChatResponse); ok && e.generate {
		v = generateOf(c)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := e.w.Write(append(b, '\n')); err != nil {
		return err
	}
	e.flush()
	return nil
}

func (e *StreamEncoder) chunk(msg Message) error {
	t := e.now()
	if e.first.IsZero() {
		e.first = t
	}
	msg.Role = "assistant"
	return e.line(ChatResponse{Model: e.model, CreatedAt: t.UTC(), Message: msg})
}

func (e *StreamEncoder) flushCall(idx int) error {
	c := e.calls[idx]
	if c == nil {
		return nil
	}
	delete(e.calls, idx)
	n := e.nTools
	e.nTools++
	return e.chunk(Message{ToolCalls: []ToolCall{{ID: c.id, Function: ToolCallFunction{Index: n, Name: c.name, Arguments: argumentsObject([]byte(c.args.String()))}}}})
}

// Encode writes what one event adds to the stream.
func (e *StreamEncoder) Encode(ev llm.Event) error {
	if e.done {
		return nil
	}
	switch ev.Type {
	case llm.EventStart:
		if e.model == "" {
			e.model = ev.Model
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventPartStart:
		if ev.Part == nil {
			return nil
		}
		e.kinds[ev.Index] = ev.Part.Type
		if ev.Part.Type == llm.PartToolCall && ev.Part.ToolCall != nil {
			c := &openCall{id: ev.Part.ToolCall.ID, name: ev.Part.ToolCall.Name}
			c.args.Write(ev.Part.ToolCall.Arguments)
			e.calls[ev.Index] = c
		}
	case llm.EventDelta:
		switch e.kinds[ev.Index] {
		case llm.PartText:
			if ev.Delta.Text != "" {
				return e.chunk(Message{Content: ev.Delta.Text})
			}
		case llm.PartThinking:
			if ev.Delta.Text != "" {
				return e.chunk(Message{Thinking: ev.Delta.Text})
			}
		case llm.PartToolCall:
			if c := e.calls[ev.Index]; c != nil {
				c.args.WriteString(ev.Delta.Arguments)
			}
		}
	case llm.EventPartStop:
		return e.flushCall(ev.Index)
	case llm.EventUsage:
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
	case llm.EventStop:
		open := make([]int, 0, len(e.calls))
		for idx := range e.calls {
			open = append(open, idx)
		}
		sort.Ints(open)
		for _, idx := range open {
			if err := e.flushCall(idx); err != nil {
				return err
			}
		}
		if ev.Usage != nil {
			e.usage = llm.MergeUsage(e.usage, *ev.Usage)
		}
		e.done = true
		end := e.now()
		first := e.first
		if first.IsZero() {
			first = end
		}
		return e.line(ChatResponse{Model: e.model, CreatedAt: end.UTC(), Message: Message{Role: "assistant"}, Done: true,
			DoneReason: doneReason(ev.StopReason), PromptEvalCount: e.usage.PromptTokens(), EvalCount: e.usage.OutputTokens,
			TotalDuration: int64(end.Sub(e.start)), PromptEvalDuration: int64(first.Sub(e.start)), EvalDuration: int64(end.Sub(first))})
	case llm.EventError:
		e.done = true
		msg := "upstream stream failed"
		if ev.Err != nil && ev.Err.Message != "" {
			msg = ev.Err.Message
		}
		return e.line(ErrorBody{Error: msg})
	}
	return nil
}

// Close ends a stream that stopped without a Stop or Error event with an
// error line, so a truncated answer is not mistaken for a complete one.
func (e *StreamEncoder) Close() error {
	if e.done {
		return nil
	}
	return e.Encode(llm.Event{Type: llm.EventError, Err: &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer,
		Message: "upstream stream ended unexpectedly", InStream: true}})
}

// DecodeEmbedRequest validates a client's /api/embed body and returns its
// inputs.
func DecodeEmbedRequest(body []byte) (*EmbedRequest, []string, error) {
	var req EmbedRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, invalid("request body is not a valid Ollama embed request: %v", err)
	}
	if req.Model == "" {
		return nil, nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", req.Model); err != nil {
		return nil, nil, err
	}
	if req.Dimensions < 0 {
		return nil, nil, invalid("dimensions: must be positive")
	}
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		return &req, []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(req.Input, &many); err != nil || len(many) == 0 {
		return nil, nil, invalid("input: must be a string or a non-empty array of strings")
	}
	return &req, many, nil
}

// EncodeEmbedResponse renders vectors as an /api/embed answer.
func EncodeEmbedResponse(model string, vectors [][]float32, u llm.Usage, total time.Duration) ([]byte, error) {
	if vectors == nil {
		vectors = [][]float32{}
	}
	return json.Marshal(EmbedResponse{Model: model, Embeddings: vectors, PromptEvalCount: u.PromptTokens(), TotalDuration: int64(total)})
}

// TagEntry builds the /api/tags entry of a gateway model id; family names
// the provider (or "alias", "combo").
func TagEntry(id, family string, modified time.Time) ModelEntry {
	sum := sha256.Sum256([]byte(id))
	return ModelEntry{Name: id, Model: id, ModifiedAt: modified.UTC(), Digest: hex.EncodeToString(sum[:]),
		Details: ModelDetails{Format: "gateway", Family: family, Families: []string{family}}}
}

// EncodeVersion renders the /api/version answer.
func EncodeVersion() []byte {
	b, _ := json.Marshal(VersionResponse{Version: APIVersion})
	return b
}

// WithNative marks ctx as carrying a request from an Ollama-dialect
// client, so its unknown fields and options are passed through to Ollama
// upstreams.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectOllama)
}

// IsNative reports whether ctx was marked with WithNative.
func IsNative(ctx context.Context) bool {
	return llm.DialectOf(ctx) == llm.DialectOllama
}
