// Package llm is the hub of the OmniRoute gateway: the one canonical model
// of a chat request, its response and its stream events, that every inbound
// dialect (what clients speak) translates to and every provider adapter
// (what upstreams speak) translates from. Nothing here knows a wire format.
//
// Invariants the translators rely on:
//   - System prompts are collected, in order, in Request.System; messages
//     hold only user, assistant and tool turns.
//   - Content is a list of Parts. A part's Index in a stream counts every
//     part of the response (text, thinking and tool calls alike), as
//     Anthropic content blocks do; dialects that number tool calls
//     separately (OpenAI) keep their own counter.
//   - Tool-call arguments are JSON object text (never empty: "{}"). Tool
//     call ids are kept verbatim across turns; adapters for formats without
//     ids mint them and pair results by name.
//   - Usage.InputTokens excludes cache reads and writes (Anthropic's
//     convention); PromptTokens() gives OpenAI's inclusive count.
//   - Thinking parts keep their Signature so they can be sent back
//     unchanged in tool loops.
//   - A RoleTool message carries exactly one PartToolResult; dialects
//     that group results (Anthropic's user turn) split and merge them.
package llm

import (
	"encoding/json"
	"time"
)

// Role of a message.
type Role string

// Roles. System prompts live in Request.System, not in messages.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// PartType discriminates Part.
type PartType string

// Part types.
const (
	PartText             PartType = "text"
	PartImage            PartType = "image"
	PartAudio            PartType = "audio"
	PartFile             PartType = "file"
	PartToolCall         PartType = "tool_call"
	PartToolResult       PartType = "tool_result"
	PartThinking         PartType = "thinking"
	PartRedactedThinking PartType = "redacted_thinking"
)

// CacheControl marks a prompt-cache breakpoint (Anthropic "ephemeral").
type CacheControl struct {
	Type string `json:"type"`
	TTL  string `json:"ttl,omitempty"`
}

// Media is an image, audio clip or file: inline data or a URL.
type Media struct {
	MIMEType string `json:"mime_type,omitempty"`
	Data     []byte `json:"data,omitempty"` // raw bytes (not base64)
	URL      string `json:"url,omitempty"`
	Detail   string `json:"detail,omitempty"` // OpenAI image detail
	Name     string `json:"name,omitempty"`   // file name
}

// ToolCall is a model's request to call a function.
type ToolCall struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"` // a JSON object
}

// ToolResult is the answer to a ToolCall.
type ToolResult struct {
	CallID  string `json:"call_id"`
	Name    string `json:"name,omitempty"` // needed by formats that pair by name
	Content []Part `json:"content"`
	IsError bool   `json:"is_error,omitempty"`
}

// Part is one piece of content.
type Part struct {
	Type PartType `json:"type"`
	// Text holds text, or the reasoning of a thinking part.
	Text string `json:"text,omitempty"`
	// Signature authenticates a thinking part (Anthropic signature,
	// Responses encrypted_content); Data carries redacted thinking.
	Signature    string        `json:"signature,omitempty"`
	Data         string        `json:"data,omitempty"`
	Media        *Media        `json:"media,omitempty"`
	ToolCall     *ToolCall     `json:"tool_call,omitempty"`
	ToolResult   *ToolResult   `json:"tool_result,omitempty"`
	CacheControl *CacheControl `json:"cache_control,omitempty"`
}

// Message is one turn of the conversation.
type Message struct {
	Role  Role   `json:"role"`
	Parts []Part `json:"parts"`
	Name  string `json:"name,omitempty"`
}

// Tool is a function the model may call.
type Tool struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	Parameters   json.RawMessage `json:"parameters,omitempty"` // JSON Schema object
	Strict       *bool           `json:"strict,omitempty"`
	CacheControl *CacheControl   `json:"cache_control,omitempty"`
}

// ToolChoice modes.
const (
	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required" // Anthropic "any"
	ToolChoiceTool     = "tool"     // a specific tool: Name
)

// ToolChoice constrains tool use.
type ToolChoice struct {
	Mode string `json:"mode"`
	Name string `json:"name,omitempty"`
	// DisableParallel is Anthropic's disable_parallel_tool_use.
	DisableParallel bool `json:"disable_parallel,omitempty"`
}

// ResponseFormat asks for structured output.
type ResponseFormat struct {
	Type   string          `json:"type"` // text, json_object, json_schema
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict *bool           `json:"strict,omitempty"`
}

// Reasoning configures thinking: an effort level (OpenAI/Responses) or a
// token budget (Anthropic, Gemini). Adapters map one onto the other.
type Reasoning struct {
	Enabled      bool   `json:"enabled"`
	Effort       string `json:"effort,omitempty"` // minimal, low, medium, high
	BudgetTokens int    `json:"budget_tokens,omitempty"`
	Summary      string `json:"summary,omitempty"`
}

// Request is a canonical chat request.
type Request struct {
	Model    string    `json:"model"`
	System   []Part    `json:"system,omitempty"`
	Messages []Message `json:"messages"`

	Tools             []Tool      `json:"tools,omitempty"`
	ToolChoice        *ToolChoice `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool       `json:"parallel_tool_calls,omitempty"`

	MaxTokens        *int              `json:"max_tokens,omitempty"`
	Temperature      *float64          `json:"temperature,omitempty"`
	TopP             *float64          `json:"top_p,omitempty"`
	TopK             *int              `json:"top_k,omitempty"`
	Stop             []string          `json:"stop,omitempty"`
	Seed             *int64            `json:"seed,omitempty"`
	PresencePenalty  *float64          `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64          `json:"frequency_penalty,omitempty"`
	ResponseFormat   *ResponseFormat   `json:"response_format,omitempty"`
	Reasoning        *Reasoning        `json:"reasoning,omitempty"`
	User             string            `json:"user,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`

	Stream bool `json:"stream"`
	// IncludeUsage reports whether the client asked for usage in its
	// stream (OpenAI stream_options.include_usage). Upstream usage is
	// always requested regardless.
	IncludeUsage bool `json:"include_usage,omitempty"`

	// Extra holds client parameters the model does not know, passed
	// through only to an upstream of the client's own format.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`

	// EffortBudgets is the effort-to-budget mapping the adapters use for
	// this request (the gateway's thinking-budget setting); nil is
	// DefaultEffortBudgets.
	EffortBudgets *EffortBudgets `json:"effort_budgets,omitempty"`
}

// OutputBound is the most output an upstream may bill for a request as
// an adapter sends it; a budget reserves it before the call.
type OutputBound struct {
	// Tokens is the output cap sent upstream: the request's own, or the
	// adapter's default when the request names none; 0 when no cap is
	// sent (the model's own limit applies).
	Tokens int
	// Default marks Tokens as the adapter's default rather than the
	// client's: the model's limit, when lower, bounds the output first.
	Default bool
	// Extra is output billed beyond Tokens (a thinking budget the
	// upstream does not count within its cap).
	Extra int
}

// StopReason is why generation ended.
type StopReason string

// Stop reasons.
const (
	StopEnd           StopReason = "end_turn"
	StopMaxTokens     StopReason = "max_tokens"
	StopToolUse       StopReason = "tool_use"
	StopSequence      StopReason = "stop_sequence"
	StopContentFilter StopReason = "content_filter"
	StopPauseTurn     StopReason = "pause_turn"
	StopRefusal       StopReason = "refusal"
	StopError         StopReason = "error"
)

// Usage counts tokens. InputTokens excludes cache reads and writes.
type Usage struct {
	InputTokens      int  `json:"input_tokens"`
	OutputTokens     int  `json:"output_tokens"`
	CacheReadTokens  int  `json:"cache_read_tokens,omitempty"`
	CacheWriteTokens int  `json:"cache_write_tokens,omitempty"`
	ReasoningTokens  int  `json:"reasoning_tokens,omitempty"` // included in OutputTokens
	Estimated        bool `json:"estimated,omitempty"`        // counted by the gateway, not the upstream
}

// PromptTokens is the OpenAI-style prompt count, cache traffic included.
func (u Usage) PromptTokens() int { return u.InputTokens + u.CacheReadTokens + u.CacheWriteTokens }

// TotalTokens is prompt plus output.
func (u Usage) TotalTokens() int { return u.PromptTokens() + u.OutputTokens }

// Response is a complete (non-streamed) answer.
type Response struct {
	ID           string     `json:"id"`
	Model        string     `json:"model"`
	Content      []Part     `json:"content"`
	StopReason   StopReason `json:"stop_reason"`
	StopSequence string     `json:"stop_sequence,omitempty"`
	Usage        Usage      `json:"usage"`
	Created      time.Time  `json:"created"`
}

// ToolCalls returns the tool-call parts of r in order.
func (r *Response) ToolCalls() []ToolCall {
	var out []ToolCall
	for _, p := range r.Content {
		if p.Type == PartToolCall && p.ToolCall != nil {
			out = append(out, *p.ToolCall)
		}
	}
	return out
}

// Text returns the concatenated text parts of r.
func (r *Response) Text() string {
	var s string
	for _, p := range r.Content {
		if p.Type == PartText {
			s += p.Text
		}
	}
	return s
}
