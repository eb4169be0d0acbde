package responses

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

// knownFields are the request fields DecodeRequest maps; the others go to
// llm.Request.Extra (sent only to a Responses upstream).
var knownFields = map[string]bool{"model": true, "input": true, "instructions": true, "tools": true, "tool_choice": true,
	"parallel_tool_calls": true, "max_output_tokens": true, "temperature": true, "top_p": true, "reasoning": true, "text": true,
	"previous_response_id": true, "store": true, "stream": true, "metadata": true, "user": true}

// Inbound is a decoded client request: the canonical request plus what
// the gateway itself must act on.
type Inbound struct {
	// Request is the canonical request. Its System holds the instructions
	// first (Instructions parts), then the input's system and developer
	// messages, in order.
	Request *llm.Request
	// Instructions is how many leading System parts came from the
	// instructions field; they are not carried to a later turn that names
	// this response as previous_response_id (OpenAI's rule).
	Instructions int
	// PreviousResponseID continues a stored conversation.
	PreviousResponseID string
	// Store is false when the client asked not to keep the response.
	Store bool
	// Echo holds the request parameters the response object repeats.
	Echo Response
}

// DecodeRequest turns a client's POST /v1/responses body into the
// canonical model. Failures are *llm.Error 400 naming the field.
func DecodeRequest(body []byte) (*Inbound, error) {
	var in CreateRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("request body is not a valid response request: %v", err)
	}
	if in.Model == "" {
		return nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", in.Model); err != nil {
		return nil, err
	}
	r := &llm.Request{Model: in.Model, ParallelToolCalls: in.ParallelToolCalls, MaxTokens: in.MaxOutputTokens,
		Temperature: in.Temperature, TopP: in.TopP, User: in.User, Stream: in.Stream, IncludeUsage: true}
	if len(in.Metadata) > 0 {
		r.Metadata = in.Metadata
	}
	out := &Inbound{Request: r, PreviousResponseID: in.PreviousResponseID, Store: in.Store == nil || *in.Store}
	if in.MaxOutputTokens != nil && *in.MaxOutputTokens <= 0 {
		return nil, invalid("max_output_tokens: must be positive")
	}
	if rs := in.Reasoning; rs != nil && (rs.Effort != "" || rs.Summary != "") {
		r.Reasoning = &llm.Reasoning{Enabled: rs.Effort != "none", Effort: rs.Effort, Summary: rs.Summary}
	}
	if t := in.Text; t != nil && t.Format != nil {
		f := t.Format
		switch f.Type {
		case "text":
		case "json_object":
			r.ResponseFormat = &llm.ResponseFormat{Type: f.Type}
		case "json_schema":
			if f.Name == "" || len(f.Schema) == 0 {
				return nil, invalid("text.format: json_schema needs a name and a schema")
			}
			r.ResponseFormat = &llm.ResponseFormat{Type: f.Type, Name: f.Name, Schema: f.Schema, Strict: f.Strict}
		default:
			return nil, invalid("text.format.type: %q is not text, json_object or json_schema", f.Type)
		}
	}
	if err := decodeInstructions(r, in.Instructions); err != nil {
		return nil, err
	}
	out.Instructions = len(r.System)
	var builtin []json.RawMessage
	for i, raw := range in.Tools {
		var ft FunctionTool
		if err := json.Unmarshal(raw, &ft); err != nil {
			return nil, invalid("tools[%d]: must be a tool object", i)
		}
		switch ft.Type {
		case "function":
			if ft.Name == "" {
				return nil, invalid("tools[%d].name: required for a function tool", i)
			}
			r.Tools = append(r.Tools, llm.Tool{Name: ft.Name, Description: ft.Description, Parameters: ft.Parameters, Strict: ft.Strict})
		case "":
			return nil, invalid("tools[%d].type: required", i)
		default:
			builtin = append(builtin, raw) // built-in tools: only a Responses upstream runs them
		}
	}
	if len(in.ToolChoice) > 0 && string(in.ToolChoice) != "null" {
		tc, err := decodeToolChoice(in.ToolChoice)
		if err != nil {
			return nil, err
		}
		r.ToolChoice = tc
	}
	if err := decodeInput(r, in.Input); err != nil {
		return nil, err
	}
	if len(r.Messages) == 0 && in.PreviousResponseID == "" {
		return nil, invalid("input: at least one user, assistant or tool item is required")
	}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		for k, v := range raw {
			if k == "conversation" && string(v) != "null" {
				return nil, invalid("conversation: not supported by the gateway; use previous_response_id")
			}
			if !knownFields[k] {
				if r.Extra == nil {
					r.Extra = map[string]json.RawMessage{}
				}
				r.Extra[k] = v
			}
		}
	}
	if len(builtin) > 0 {
		if r.Extra == nil {
			r.Extra = map[string]json.RawMessage{}
		}
		r.Extra[ExtraBuiltinTools], _ = json.Marshal(builtin)
	}
	out.Echo = echo(&in)
	return out, nil
}

// ExtraBuiltinTools is the llm.Request.Extra key holding the client's
// built-in tools (web_search, file_search, …) as a JSON list. Only a
// Responses upstream receives them (appended to its tools).
const ExtraBuiltinTools = "tools"

// BuiltinTools reports whether r carries built-in tools.
func BuiltinTools(r *llm.Request) bool { _, ok := r.Extra[ExtraBuiltinTools]; return ok }

// echo builds the response object's copy of the request parameters.
func echo(in *CreateRequest) Response {
	e := Response{Object: "response", Model: in.Model, Instructions: in.Instructions, MaxOutputTokens: in.MaxOutputTokens,
		ParallelToolCalls: in.ParallelToolCalls == nil || *in.ParallelToolCalls, Reasoning: &EchoReasoning{},
		Store: in.Store == nil || *in.Store, Temperature: in.Temperature, Text: in.Text, ToolChoice: in.ToolChoice,
		Tools: in.Tools, TopP: in.TopP, Truncation: in.Truncation, Metadata: in.Metadata}
	if len(e.Instructions) == 0 {
		e.Instructions = json.RawMessage("null")
	}
	if len(e.ToolChoice) == 0 {
		e.ToolChoice = json.RawMessage(`"auto"`)
	}
	if e.Tools == nil {
		e.Tools = []json.RawMessage{}
	}
	if e.Text == nil || e.Text.Format == nil {
		e.Text = &TextConfig{Format: &TextFormat{Type: "text"}}
	}
	if rs := in.Reasoning; rs != nil {
		if rs.Effort != "" {
			e.Reasoning.Effort = &rs.Effort
		}
		if rs.Summary != "" {
			e.Reasoning.Summary = &rs.Summary
		}
	}
	if e.Truncation == "" {
		e.Truncation = "disabled"
	}
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	if in.User != "" {
		u := in.User
		e.User = &u
	}
	if in.PreviousResponseID != "" {
		p := in.PreviousResponseID
		e.PreviousResponseID = &p
	}
	return e
}

func decodeInstructions(r *llm.Request, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return invalid("instructions: must be a string")
	}
	if s != "" {
		r.System = append(r.System, llm.Part{Type: llm.PartText, Text: s})
	}
	return nil
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
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, invalid(`tool_choice: must be a string or {"type":"function","name":…}`)
	}
	if obj.Type != "function" || obj.Name == "" {
		return nil, invalid("tool_choice: only auto, none, required or a function by name are supported (got type %q)", obj.Type)
	}
	return &llm.ToolChoice{Mode: llm.ToolChoiceTool, Name: obj.Name}, nil
}

func decodeInput(r *llm.Request, raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s != "" {
			r.Messages = append(r.Messages, llm.Message{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: s}}})
		}
		return nil
	}
	var items []Item
	if err := json.Unmarshal(raw, &items); err != nil {
		return invalid("input: must be a string or a list of items: %v", err)
	}
	for i, it := range items {
		if err := decodeItem(r, i, it); err != nil {
			return err
		}
	}
	return nil
}

// assistant returns the assistant message the next assistant-side item
// belongs to: the last message when it is an assistant turn, else a new one.
func assistant(r *llm.Request) *llm.Message {
	if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == llm.RoleAssistant {
		return &r.Messages[n-1]
	}
	r.Messages = append(r.Messages, llm.Message{Role: llm.RoleAssistant})
	return &r.Messages[len(r.Messages)-1]
}

func decodeItem(r *llm.Request, i int, it Item) error {
	typ := it.Type
	if typ == "" && it.Role != "" {
		typ = "message" // EasyInputMessage: {role, content}
	}
	switch typ {
	case "message":
		parts, err := decodeContent(fmt.Sprintf("input[%d].content", i), it.Content)
		if err != nil {
			return err
		}
		switch it.Role {
		case "system", "developer":
			r.System = append(r.System, parts...)
		case "user":
			if len(parts) > 0 {
				r.Messages = append(r.Messages, llm.Message{Role: llm.RoleUser, Parts: parts})
			}
		case "assistant":
			if len(parts) > 0 {
				m := assistant(r)
				m.Parts = append(m.Parts, parts...)
			}
		default:
			return invalid("input[%d].role: %q is not user, assistant, system or developer", i, it.Role)
		}
	case "function_call":
		if it.CallID == "" || it.Name == "" {
			return invalid("input[%d]: a function_call needs call_id and name", i)
		}
		m := assistant(r)
		m.Parts = append(m.Parts, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: it.CallID, Name: it.Name,
			Arguments: llm.NormalizeArguments(it.Arguments)}})
	case "function_call_output":
		if it.CallID == "" {
			return invalid("input[%d].call_id: required for a function_call_output", i)
		}
		parts, err := decodeContent(fmt.Sprintf("input[%d].output", i), it.Output)
		if err != nil {
			return err
		}
		r.Messages = append(r.Messages, llm.Message{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult,
			ToolResult: &llm.ToolResult{CallID: it.CallID, Name: toolName(r, it.CallID), Content: parts}}}})
	case "reasoning":
		var texts []string
		for _, s := range it.Summary {
			if s.Text != "" {
				texts = append(texts, s.Text)
			}
		}
		if len(texts) == 0 && it.EncryptedContent == "" {
			return nil // nothing a model could be sent back
		}
		m := assistant(r)
		m.Parts = append(m.Parts, llm.Part{Type: llm.PartThinking, Text: strings.Join(texts, "\n\n"), Signature: it.EncryptedContent})
	case "item_reference":
		return invalid("input[%d]: item_reference is not supported by the gateway; send the item itself or use previous_response_id", i)
	case "":
		return invalid("input[%d].type: required", i)
	default:
		return invalid("input[%d].type: %q is not supported (message, function_call, function_call_output and reasoning are)", i, typ)
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

// decodeContent reads a message's content or a function output: a string
// or a list of content parts.
func decodeContent(field string, raw json.RawMessage) ([]llm.Part, error) {
	raw = bytes.TrimSpace(raw)
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
		return nil, invalid("%s: must be a string or a list of content parts", field)
	}
	var out []llm.Part
	for j, c := range cps {
		f := fmt.Sprintf("%s[%d]", field, j)
		switch c.Type {
		case "input_text", "output_text", "text":
			if c.Text != "" {
				out = append(out, llm.Part{Type: llm.PartText, Text: c.Text})
			}
		case "refusal":
			if c.Refusal != "" {
				out = append(out, llm.Part{Type: llm.PartText, Text: c.Refusal})
			}
		case "input_image":
			if c.FileID != "" {
				return nil, invalid("%s.file_id: uploaded files are not supported by the gateway; send image_url (a URL or a data: URL)", f)
			}
			if c.ImageURL == "" {
				return nil, invalid("%s.image_url: required", f)
			}
			m, err := decodeURL(c.ImageURL)
			if err != nil {
				return nil, invalid("%s.image_url: %v", f, err)
			}
			m.Detail = c.Detail
			out = append(out, llm.Part{Type: llm.PartImage, Media: m})
		case "input_file":
			var m *llm.Media
			switch {
			case c.FileID != "":
				return nil, invalid("%s.file_id: uploaded files are not supported by the gateway; send file_data or file_url", f)
			case c.FileData != "":
				var err error
				if m, err = decodeFileData(c.FileData); err != nil {
					return nil, invalid("%s.file_data: %v", f, err)
				}
			case c.FileURL != "":
				m = &llm.Media{URL: c.FileURL}
			default:
				return nil, invalid("%s: input_file needs file_data or file_url", f)
			}
			m.Name = c.Filename
			out = append(out, llm.Part{Type: llm.PartFile, Media: m})
		default:
			return nil, invalid("%s.type: %q is not supported", f, c.Type)
		}
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

// decodeFileData reads file_data: a data: URL or bare base64.
func decodeFileData(s string) (*llm.Media, error) {
	if strings.HasPrefix(s, "data:") {
		return decodeURL(s)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64")
	}
	return &llm.Media{Data: b}, nil
}

// dataURL renders inline media as a data: URL.
func dataURL(m *llm.Media) string {
	mt := m.MIMEType
	if mt == "" {
		mt = "application/octet-stream"
	}
	return "data:" + mt + ";base64," + base64.StdEncoding.EncodeToString(m.Data)
}
