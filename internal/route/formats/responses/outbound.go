package responses

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// EncodeOptions tune requests for one upstream.
type EncodeOptions struct {
	// Native marks a request from a Responses client: its Extra fields
	// (include, truncation, built-in tools, …) are passed through.
	Native bool
}

// upstreamRequest is what the gateway sends: CreateRequest with store
// always present (false).
type upstreamRequest struct {
	Model             string            `json:"model"`
	Input             []Item            `json:"input"`
	Instructions      string            `json:"instructions,omitempty"`
	Tools             []any             `json:"tools,omitempty"`
	ToolChoice        any               `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls,omitempty"`
	MaxOutputTokens   *int              `json:"max_output_tokens,omitempty"`
	Temperature       *float64          `json:"temperature,omitempty"`
	TopP              *float64          `json:"top_p,omitempty"`
	Reasoning         *Reasoning        `json:"reasoning,omitempty"`
	Text              *TextConfig       `json:"text,omitempty"`
	Store             bool              `json:"store"`
	Stream            bool              `json:"stream,omitempty"`
	Metadata          map[string]string `json:"metadata,omitempty"`
	User              string            `json:"user,omitempty"`
	Include           []string          `json:"include,omitempty"`
}

// EncodeRequest renders a canonical request for POST {base}/responses as
// model. The gateway owns conversation state: store is always false and
// the whole conversation is sent.
func EncodeRequest(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	out := upstreamRequest{Model: model, Input: []Item{}, ParallelToolCalls: r.ParallelToolCalls, MaxOutputTokens: r.MaxTokens,
		Temperature: r.Temperature, TopP: r.TopP, Stream: r.Stream, User: r.User}
	if len(r.Metadata) > 0 {
		out.Metadata = r.Metadata
	}
	if rs := r.Reasoning; rs != nil {
		switch {
		case rs.Enabled:
			out.Reasoning = &Reasoning{Effort: rs.Effort, Summary: rs.Summary}
			if out.Reasoning.Effort == "" {
				out.Reasoning.Effort = r.EffortBudgets.Effort(rs.BudgetTokens)
			}
			if out.Reasoning.Summary == "" {
				out.Reasoning.Summary = "auto" // the summary is the thinking text other dialects show
			}
			// Without stored state, reasoning can only be continued from
			// its encrypted content.
			out.Include = append(out.Include, "reasoning.encrypted_content")
		case rs.Effort != "":
			out.Reasoning = &Reasoning{Effort: rs.Effort}
		}
	}
	if rf := r.ResponseFormat; rf != nil && rf.Type != "" && rf.Type != "text" {
		f := &TextFormat{Type: rf.Type}
		if rf.Type == "json_schema" {
			f.Name, f.Schema, f.Strict = rf.Name, rf.Schema, rf.Strict
			if f.Name == "" {
				f.Name = "response"
			}
		}
		out.Text = &TextConfig{Format: f}
	}
	for _, t := range r.Tools {
		out.Tools = append(out.Tools, FunctionTool{Type: "function", Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict})
	}
	if tc := r.ToolChoice; tc != nil {
		if tc.Mode == llm.ToolChoiceTool {
			out.ToolChoice = map[string]string{"type": "function", "name": tc.Name}
		} else if tc.Mode != "" {
			out.ToolChoice = tc.Mode
		}
		if tc.DisableParallel {
			f := false
			out.ParallelToolCalls = &f
		}
	}
	if len(r.System) > 0 {
		if text, ok := plainText(r.System); ok {
			out.Instructions = text
		} else {
			content, err := encodeContent(r.System, "input_text")
			if err != nil {
				return nil, err
			}
			out.Input = append(out.Input, Item{Type: "message", Role: "system", Content: content})
		}
	}
	for i, m := range r.Messages {
		items, err := encodeMessage(m)
		if err != nil {
			if le, ok := err.(*llm.Error); ok {
				le.Message = fmt.Sprintf("messages[%d]: %s", i, le.Message)
			}
			return nil, err
		}
		out.Input = append(out.Input, items...)
	}
	if opts.Native {
		if raw, ok := r.Extra[ExtraBuiltinTools]; ok {
			var builtin []json.RawMessage
			if json.Unmarshal(raw, &builtin) == nil {
				for _, b := range builtin {
					out.Tools = append(out.Tools, b)
				}
			}
		}
		if raw, ok := r.Extra["include"]; ok {
			var inc []string
			if json.Unmarshal(raw, &inc) == nil {
				for _, s := range inc {
					if !contains(out.Include, s) {
						out.Include = append(out.Include, s)
					}
				}
			}
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
		if _, set := merged[k]; !set && k != ExtraBuiltinTools && k != "include" && k != "store" && k != "previous_response_id" {
			merged[k] = v
		}
	}
	return json.Marshal(merged)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// plainText joins parts that are all text.
func plainText(parts []llm.Part) (string, bool) {
	var texts []string
	for _, p := range parts {
		if p.Type != llm.PartText {
			return "", false
		}
		if p.Text != "" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n\n"), true
}

func badContent(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

// encodeContent renders parts as a content list; textType is input_text
// or output_text.
func encodeContent(parts []llm.Part, textType string) (json.RawMessage, error) {
	out := []ContentPart{}
	for _, p := range parts {
		switch p.Type {
		case llm.PartText:
			if p.Text != "" {
				out = append(out, ContentPart{Type: textType, Text: p.Text})
			}
		case llm.PartImage:
			if p.Media == nil {
				return nil, badContent("an image part has no media")
			}
			u := p.Media.URL
			if u == "" {
				u = dataURL(p.Media)
			}
			detail := p.Media.Detail
			if detail == "" {
				detail = "auto"
			}
			out = append(out, ContentPart{Type: "input_image", ImageURL: u, Detail: detail})
		case llm.PartFile:
			if p.Media == nil {
				return nil, badContent("a file part has no media")
			}
			c := ContentPart{Type: "input_file", Filename: p.Media.Name}
			if p.Media.URL != "" {
				c.FileURL = p.Media.URL
			} else {
				c.FileData = dataURL(p.Media)
				if c.Filename == "" {
					c.Filename = "file"
				}
			}
			out = append(out, c)
		case llm.PartThinking, llm.PartRedactedThinking:
		default:
			return nil, badContent("content of type %s cannot be sent to a Responses provider", p.Type)
		}
	}
	return json.Marshal(out)
}

// encodeMessage renders one canonical message as input items.
func encodeMessage(m llm.Message) ([]Item, error) {
	switch m.Role {
	case llm.RoleUser:
		if text, ok := plainText(m.Parts); ok {
			if text == "" {
				return nil, nil
			}
			c, _ := json.Marshal(text)
			return []Item{{Type: "message", Role: "user", Content: c}}, nil
		}
		c, err := encodeContent(m.Parts, "input_text")
		if err != nil {
			return nil, err
		}
		return []Item{{Type: "message", Role: "user", Content: c}}, nil
	case llm.RoleTool:
		var items []Item
		for _, p := range m.Parts {
			if p.ToolResult == nil {
				continue
			}
			var out json.RawMessage
			if text, ok := plainText(p.ToolResult.Content); ok {
				if p.ToolResult.IsError && text == "" {
					text = "error"
				}
				out, _ = json.Marshal(text)
			} else {
				var err error
				if out, err = encodeContent(p.ToolResult.Content, "input_text"); err != nil {
					return nil, err
				}
			}
			items = append(items, Item{Type: "function_call_output", CallID: p.ToolResult.CallID, Output: out})
		}
		return items, nil
	case llm.RoleAssistant:
		var items []Item
		var text []llm.Part
		flush := func() error {
			if len(text) == 0 {
				return nil
			}
			c, err := encodeContent(text, "output_text")
			text = nil
			if err != nil || string(c) == "[]" {
				return err
			}
			items = append(items, Item{Type: "message", Role: "assistant", Content: c})
			return nil
		}
		for _, p := range m.Parts {
			switch p.Type {
			case llm.PartText:
				text = append(text, p)
			case llm.PartThinking:
				// Reasoning without encrypted content cannot be verified by
				// the upstream (it came from another provider): dropped.
				if p.Signature == "" {
					continue
				}
				if err := flush(); err != nil {
					return nil, err
				}
				items = append(items, reasoningItem("", p.Text, p.Signature))
			case llm.PartToolCall:
				if err := flush(); err != nil {
					return nil, err
				}
				items = append(items, Item{Type: "function_call", CallID: p.ToolCall.ID, Name: p.ToolCall.Name,
					Arguments: string(llm.NormalizeArguments(string(p.ToolCall.Arguments)))})
			case llm.PartRedactedThinking:
			default:
				return nil, badContent("assistant content of type %s cannot be sent to a Responses provider", p.Type)
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		return items, nil
	}
	return nil, badContent("role %q cannot be sent to a Responses provider", m.Role)
}

// stopReason derives the canonical stop reason of a finished response.
func stopReason(status string, details *IncompleteDetails, calls bool) llm.StopReason {
	if status == "incomplete" && details != nil {
		switch details.Reason {
		case "max_output_tokens":
			return llm.StopMaxTokens
		case "content_filter":
			return llm.StopContentFilter
		}
	}
	if calls {
		return llm.StopToolUse
	}
	return llm.StopEnd
}

// decodeOutput turns output items into canonical parts.
func decodeOutput(items []Item) (parts []llm.Part, refusal bool) {
	for _, it := range items {
		switch it.Type {
		case "message":
			var cps []ContentPart
			if json.Unmarshal(it.Content, &cps) != nil {
				var s string
				if json.Unmarshal(it.Content, &s) == nil && s != "" {
					parts = append(parts, llm.Part{Type: llm.PartText, Text: s})
				}
				continue
			}
			for _, c := range cps {
				switch c.Type {
				case "output_text":
					parts = append(parts, llm.Part{Type: llm.PartText, Text: c.Text})
				case "refusal":
					refusal = true
					parts = append(parts, llm.Part{Type: llm.PartText, Text: c.Refusal})
				}
			}
		case "function_call":
			parts = append(parts, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: it.CallID, Name: it.Name,
				Arguments: llm.NormalizeArguments(it.Arguments)}})
		case "reasoning":
			var texts []string
			for _, s := range it.Summary {
				if s.Text != "" {
					texts = append(texts, s.Text)
				}
			}
			parts = append(parts, llm.Part{Type: llm.PartThinking, Text: strings.Join(texts, "\n\n"), Signature: it.EncryptedContent})
		}
	}
	return parts, refusal
}

func hasCalls(parts []llm.Part) bool {
	for _, p := range parts {
		if p.Type == llm.PartToolCall {
			return true
		}
	}
	return false
}

// DecodeResponse reads a response object from an upstream. A failed
// response is returned as its error.
func DecodeResponse(body []byte) (*llm.Response, error) {
	var in Response
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, upstreamhttp.Unreadable("", &llm.Error{Status: http.StatusBadGateway, Message: "not a response object"})
	}
	if in.Status == "failed" {
		return nil, failedError(in.Error)
	}
	r := &llm.Response{ID: in.ID, Model: in.Model, Usage: usageIn(in.Usage), Created: time.Unix(in.CreatedAt, 0).UTC()}
	var refusal bool
	r.Content, refusal = decodeOutput(in.Output)
	r.StopReason = stopReason(in.Status, in.IncompleteDetails, hasCalls(r.Content))
	if refusal && r.StopReason == llm.StopEnd {
		r.StopReason = llm.StopRefusal
	}
	return r, nil
}

// statusForCode maps a response error code to an HTTP status.
func statusForCode(code string) int {
	switch {
	case code == "rate_limit_exceeded":
		return http.StatusTooManyRequests
	case code == "server_error", code == "":
		return http.StatusInternalServerError
	case code == "vector_store_timeout":
		return http.StatusGatewayTimeout
	case strings.HasPrefix(code, "invalid_"), strings.HasPrefix(code, "image_"), strings.HasSuffix(code, "_policy_violation"),
		code == "empty_image_file", code == "failed_to_download_image", code == "unsupported_image_media_type":
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// failedError turns a failed response's error into an *llm.Error.
func failedError(e *ResponseError) *llm.Error {
	if e == nil {
		e = &ResponseError{Code: "server_error", Message: "the response failed"}
	}
	status := statusForCode(e.Code)
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Code: e.Code, Message: e.Message}
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

// WithNative marks ctx as carrying a request from a Responses client, so
// its Extra fields (built-in tools, include, truncation, …) reach a
// Responses upstream.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectResponses)
}

// IsNative reports whether ctx was marked by WithNative.
func IsNative(ctx context.Context) bool {
	return llm.DialectOf(ctx) == llm.DialectResponses
}
