package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

func invalid(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

var knownFields = map[string]bool{"model": true, "messages": true, "tools": true, "tool_choice": true, "parallel_tool_calls": true,
	"max_tokens": true, "max_completion_tokens": true, "temperature": true, "top_p": true, "stop": true, "seed": true,
	"presence_penalty": true, "frequency_penalty": true, "response_format": true, "reasoning_effort": true, "user": true,
	"stream": true, "stream_options": true}

// DecodeRequest turns a client's chat completion request into the
// canonical model. Failures are *llm.Error 400 naming the field.
func DecodeRequest(body []byte) (*llm.Request, error) {
	var in ChatRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&in); err != nil {
		return nil, invalid("request body is not a valid chat completion request: %v", err)
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
	r := &llm.Request{Model: in.Model, ParallelToolCalls: in.ParallelToolCalls, Temperature: in.Temperature, TopP: in.TopP,
		Seed: in.Seed, PresencePenalty: in.PresencePenalty, FrequencyPenalty: in.FrequencyPenalty, User: in.User, Stream: in.Stream}
	r.MaxTokens = in.MaxCompletionTokens
	if r.MaxTokens == nil {
		r.MaxTokens = in.MaxTokens
	}
	if in.StreamOptions != nil {
		r.IncludeUsage = in.StreamOptions.IncludeUsage
	}
	if in.ReasoningEffort != "" {
		r.Reasoning = &llm.Reasoning{Enabled: in.ReasoningEffort != "none", Effort: in.ReasoningEffort}
	}
	if len(in.Stop) > 0 && string(in.Stop) != "null" {
		var one string
		if err := json.Unmarshal(in.Stop, &one); err == nil {
			r.Stop = []string{one}
		} else if err := json.Unmarshal(in.Stop, &r.Stop); err != nil {
			return nil, invalid("stop: must be a string or an array of strings")
		}
	}
	if rf := in.ResponseFormat; rf != nil {
		r.ResponseFormat = &llm.ResponseFormat{Type: rf.Type}
		if rf.JSONSchema != nil {
			r.ResponseFormat.Name, r.ResponseFormat.Schema, r.ResponseFormat.Strict = rf.JSONSchema.Name, rf.JSONSchema.Schema, rf.JSONSchema.Strict
		}
	}
	for i, t := range in.Tools {
		if t.Type != "" && t.Type != "function" || t.Function.Name == "" {
			return nil, invalid("tools[%d]: only function tools with a name are supported", i)
		}
		r.Tools = append(r.Tools, llm.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters, Strict: t.Function.Strict})
	}
	if len(in.ToolChoice) > 0 && string(in.ToolChoice) != "null" {
		tc, err := decodeToolChoice(in.ToolChoice)
		if err != nil {
			return nil, err
		}
		r.ToolChoice = tc
	}
	for i, m := range in.Messages {
		if err := decodeMessage(r, i, m); err != nil {
			return nil, err
		}
	}
	var raw map[string]json.RawMessage
	if hasUnknownField(body) && json.Unmarshal(body, &raw) == nil {
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

// hasUnknownField reports whether the top-level object in body may have
// a key outside knownFields, by walking its keys without decoding values;
// only then is the body decoded a second time to collect them. Keys with
// escapes are reported as unknown (the slow path decides).
func hasUnknownField(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return true
	}
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) {
			return true
		}
		switch body[i] {
		case '}':
			return false
		case ',':
			i++
			continue
		case '"':
		default:
			return true
		}
		end := i + 1
		for end < len(body) && body[end] != '"' && body[end] != '\\' {
			end++
		}
		if end >= len(body) || body[end] == '\\' || !knownFields[string(body[i+1:end])] {
			return true
		}
		i = skipSpace(body, end+1)
		if i >= len(body) || body[i] != ':' {
			return true
		}
		if i = skipValue(body, i+1); i < 0 {
			return true
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at or
// after i, or -1 when the input ends first.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return -1
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return i // the enclosing object's end
			}
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func decodeToolChoice(b json.RawMessage) (*llm.ToolChoice, error) {
	var s string
	if json.Unmarshal(b, &s) == nil {
		switch s {
		case "auto", "none", "required":
			return &llm.ToolChoice{Mode: s}, nil
		}
		return nil, invalid("tool_choice: %q is not auto, none or required", s)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &obj); err != nil || obj.Function.Name == "" {
		return nil, invalid("tool_choice: must be a string or {\"type\":\"function\",\"function\":{\"name\":…}}")
	}
	return &llm.ToolChoice{Mode: llm.ToolChoiceTool, Name: obj.Function.Name}, nil
}

func decodeMessage(r *llm.Request, i int, m ChatMessage) error {
	parts, err := decodeContent(i, m.Content)
	if err != nil {
		return err
	}
	switch m.Role {
	case "system", "developer":
		r.System = append(r.System, parts...) // every one, in order
	case "user":
		r.Messages = append(r.Messages, llm.Message{Role: llm.RoleUser, Parts: parts, Name: m.Name})
	case "assistant":
		if m.ReasoningContent != "" {
			parts = append([]llm.Part{{Type: llm.PartThinking, Text: m.ReasoningContent}}, parts...)
		}
		for j, tc := range m.ToolCalls {
			if tc.ID == "" || tc.Function.Name == "" {
				return invalid("messages[%d].tool_calls[%d]: id and function.name are required", i, j)
			}
			parts = append(parts, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: llm.NormalizeArguments(tc.Function.Arguments)}})
		}
		r.Messages = append(r.Messages, llm.Message{Role: llm.RoleAssistant, Parts: parts})
	case "tool":
		if m.ToolCallID == "" {
			return invalid("messages[%d].tool_call_id: required for role tool", i)
		}
		r.Messages = append(r.Messages, llm.Message{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult,
			ToolResult: &llm.ToolResult{CallID: m.ToolCallID, Name: toolName(r, m.ToolCallID), Content: parts}}}})
	default:
		return invalid("messages[%d].role: %q is not system, developer, user, assistant or tool", i, m.Role)
	}
	return nil
}

// toolName finds the function name of an earlier call, for formats that
// pair results by name.
func toolName(r *llm.Request, id string) string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		for _, p := range r.Messages[i].Parts {
			if p.ToolCall != nil && p.ToolCall.ID == id {
				return p.ToolCall.Name
			}
		}
	}
	return ""
}

func decodeContent(i int, raw json.RawMessage) ([]llm.Part, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, nil
		}
		return []llm.Part{{Type: llm.PartText, Text: s}}, nil
	}
	var cps []ContentPart
	if err := json.Unmarshal(raw, &cps); err != nil {
		return nil, invalid("messages[%d].content: must be a string, an array of content parts or null", i)
	}
	var out []llm.Part
	for j, c := range cps {
		var p llm.Part
		switch c.Type {
		case "text":
			p = llm.Part{Type: llm.PartText, Text: c.Text}
		case "image_url":
			if c.ImageURL == nil || c.ImageURL.URL == "" {
				return nil, invalid("messages[%d].content[%d].image_url.url: required", i, j)
			}
			media, err := decodeURL(c.ImageURL.URL)
			if err != nil {
				return nil, invalid("messages[%d].content[%d].image_url.url: %v", i, j, err)
			}
			media.Detail = c.ImageURL.Detail
			p = llm.Part{Type: llm.PartImage, Media: media}
		case "input_audio":
			if c.InputAudio == nil {
				return nil, invalid("messages[%d].content[%d].input_audio: required", i, j)
			}
			data, err := base64.StdEncoding.DecodeString(c.InputAudio.Data)
			if err != nil {
				return nil, invalid("messages[%d].content[%d].input_audio.data: invalid base64", i, j)
			}
			p = llm.Part{Type: llm.PartAudio, Media: &llm.Media{MIMEType: "audio/" + c.InputAudio.Format, Data: data}}
		default:
			return nil, invalid("messages[%d].content[%d].type: %q is not supported", i, j, c.Type)
		}
		if c.CacheControl != nil {
			p.CacheControl = &llm.CacheControl{Type: c.CacheControl.Type, TTL: c.CacheControl.TTL}
		}
		out = append(out, p)
	}
	return out, nil
}

// decodeURL reads a data: URL into bytes; other URLs stay URLs.
func decodeURL(u string) (*llm.Media, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return &llm.Media{URL: u}, nil
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return nil, fmt.Errorf("data URL must be base64")
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("data URL has invalid base64")
	}
	return &llm.Media{MIMEType: strings.TrimSuffix(meta, ";base64"), Data: b}, nil
}

// MaxModerationInputs bounds the inputs of one moderation request.
const MaxModerationInputs = 256

// DecodeModerationRequest validates a client's moderation request: its
// model ("" when it named none) and inputs (a string, an array of
// strings, or an array of text and image_url parts).
func DecodeModerationRequest(body []byte) (string, *llm.ModerationRequest, error) {
	var in struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return "", nil, invalid("request body is not a valid moderation request: %v", err)
	}
	if len(in.Input) == 0 || string(in.Input) == "null" {
		return "", nil, invalid(`"input" is required: a string or an array`)
	}
	req := &llm.ModerationRequest{}
	var one string
	if json.Unmarshal(in.Input, &one) == nil {
		req.Inputs, req.Single = []llm.ModerationInput{{Text: one}}, true
		return in.Model, req, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(in.Input, &items); err != nil {
		return "", nil, invalid(`"input" must be a string or an array of strings or parts`)
	}
	if len(items) == 0 {
		return "", nil, invalid(`"input" may not be an empty array`)
	}
	if len(items) > MaxModerationInputs {
		return "", nil, invalid(`"input" has %d items; at most %d are classified in one request`, len(items), MaxModerationInputs)
	}
	for i, raw := range items {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			req.Inputs = append(req.Inputs, llm.ModerationInput{Text: s})
			continue
		}
		var p ModerationPart
		if err := json.Unmarshal(raw, &p); err != nil {
			return "", nil, invalid(`input[%d] must be a string or a part`, i)
		}
		switch {
		case p.Type == "text":
			req.Inputs = append(req.Inputs, llm.ModerationInput{Text: p.Text})
		case p.Type == "image_url" && p.ImageURL != nil && p.ImageURL.URL != "":
			req.Inputs = append(req.Inputs, llm.ModerationInput{ImageURL: p.ImageURL.URL})
		default:
			return "", nil, invalid(`input[%d] must be a "text" part or an "image_url" part with a url`, i)
		}
	}
	return in.Model, req, nil
}
