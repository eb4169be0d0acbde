package openai

import (
	"context"
	"encoding/base64"
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

// WithNative marks ctx as carrying a request from an OpenAI-dialect client,
// so unknown client fields are passed through to OpenAI-format upstreams.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectOpenAI)
}

// ModerationInput is the input of a moderation request as OpenAI takes
// it: the one string, an array of strings, or an array of parts when an
// input is an image.
func ModerationInput(r *llm.ModerationRequest) any {
	images := false
	for _, in := range r.Inputs {
		images = images || in.ImageURL != ""
	}
	if !images {
		if r.Single && len(r.Inputs) == 1 {
			return r.Inputs[0].Text
		}
		texts := make([]string, len(r.Inputs))
		for i, in := range r.Inputs {
			texts[i] = in.Text
		}
		return texts
	}
	parts := make([]ModerationPart, len(r.Inputs))
	for i, in := range r.Inputs {
		if in.ImageURL != "" {
			parts[i] = ModerationPart{Type: "image_url", ImageURL: &ModerationURL{URL: in.ImageURL}}
		} else {
			parts[i] = ModerationPart{Type: "text", Text: in.Text}
		}
	}
	return parts
}
