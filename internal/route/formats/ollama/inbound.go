package ollama

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"

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
