package anthropic

import (
	"bytes"
	"encoding/json"
)

// Block types of the Messages API.
const (
	BlockText             = "text"
	BlockImage            = "image"
	BlockDocument         = "document"
	BlockToolUse          = "tool_use"
	BlockToolResult       = "tool_result"
	BlockThinking         = "thinking"
	BlockRedactedThinking = "redacted_thinking"
)

// CacheControl is a prompt-cache breakpoint, {"type":"ephemeral","ttl":"1h"}.
type CacheControl struct {
	Type string `json:"type"`
	TTL  string `json:"ttl,omitempty"`
}

// Source is the source of an image or document block.
type Source struct {
	Type      string `json:"type"` // base64, url, text, file, content
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
	FileID    string `json:"file_id,omitempty"`
}

// ContentBlock is one block of message, system or tool-result content.
// Which fields apply depends on Type; MarshalJSON writes each type's own
// shape, including the fields the API requires even when empty.
type ContentBlock struct {
	Type string `json:"type"`

	Text      string          `json:"text,omitempty"`      // text
	Citations json.RawMessage `json:"citations,omitempty"` // text (kept only on the wire)

	Source  *Source `json:"source,omitempty"`  // image, document
	Title   string  `json:"title,omitempty"`   // document
	Context string  `json:"context,omitempty"` // document

	ID    string          `json:"id,omitempty"`    // tool_use
	Name  string          `json:"name,omitempty"`  // tool_use
	Input json.RawMessage `json:"input,omitempty"` // tool_use: a JSON object

	ToolUseID string  `json:"tool_use_id,omitempty"` // tool_result
	Content   Content `json:"content,omitempty"`     // tool_result: a string or blocks
	IsError   bool    `json:"is_error,omitempty"`    // tool_result

	Thinking  string `json:"thinking,omitempty"`  // thinking
	Signature string `json:"signature,omitempty"` // thinking
	Data      string `json:"data,omitempty"`      // redacted_thinking

	CacheControl *CacheControl `json:"cache_control,omitempty"`
}

// MarshalJSON writes the shape of the block's type.
func (b ContentBlock) MarshalJSON() ([]byte, error) {
	cc := b.CacheControl
	switch b.Type {
	case BlockText:
		return json.Marshal(struct {
			Type         string          `json:"type"`
			Text         string          `json:"text"`
			Citations    json.RawMessage `json:"citations,omitempty"`
			CacheControl *CacheControl   `json:"cache_control,omitempty"`
		}{b.Type, b.Text, b.Citations, cc})
	case BlockImage:
		return json.Marshal(struct {
			Type         string        `json:"type"`
			Source       *Source       `json:"source"`
			CacheControl *CacheControl `json:"cache_control,omitempty"`
		}{b.Type, b.Source, cc})
	case BlockDocument:
		return json.Marshal(struct {
			Type         string        `json:"type"`
			Source       *Source       `json:"source"`
			Title        string        `json:"title,omitempty"`
			Context      string        `json:"context,omitempty"`
			CacheControl *CacheControl `json:"cache_control,omitempty"`
		}{b.Type, b.Source, b.Title, b.Context, cc})
	case BlockToolUse:
		input := b.Input
		if len(bytes.TrimSpace(input)) == 0 {
			input = json.RawMessage("{}")
		}
		return json.Marshal(struct {
			Type         string          `json:"type"`
			ID           string          `json:"id"`
			Name         string          `json:"name"`
			Input        json.RawMessage `json:"input"`
			CacheControl *CacheControl   `json:"cache_control,omitempty"`
		}{b.Type, b.ID, b.Name, input, cc})
	case BlockToolResult:
		var content any
		switch {
		case len(b.Content) == 1 && b.Content[0].Type == BlockText && b.Content[0].CacheControl == nil && len(b.Content[0].Citations) == 0:
			content = b.Content[0].Text
		case len(b.Content) > 0:
			content = []ContentBlock(b.Content)
		}
		return json.Marshal(struct {
			Type         string        `json:"type"`
			ToolUseID    string        `json:"tool_use_id"`
			Content      any           `json:"content,omitempty"`
			IsError      bool          `json:"is_error,omitempty"`
			CacheControl *CacheControl `json:"cache_control,omitempty"`
		}{b.Type, b.ToolUseID, content, b.IsError, cc})
	case BlockThinking:
		return json.Marshal(struct {
			Type      string `json:"type"`
			Thinking  string `json:"thinking"`
			Signature string `json:"signature"`
		}{b.Type, b.Thinking, b.Signature})
	case BlockRedactedThinking:
		return json.Marshal(struct {
			Type string `json:"type"`
			Data string `json:"data"`
		}{b.Type, b.Data})
	}
	type plain ContentBlock // no methods: default encoding
	return json.Marshal(plain(b))
}

// Content is message or tool-result content: the API accepts a string
// (one text block) or a list of blocks. It always encodes as a list.
type Content []ContentBlock

// UnmarshalJSON accepts a string or a list of blocks.
func (c *Content) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = Content{{Type: BlockText, Text: s}}
		return nil
	}
	var blocks []ContentBlock
	if err := json.Unmarshal(b, &blocks); err != nil {
		return err
	}
	*c = blocks
	return nil
}

// System is the top-level system prompt: a string or text blocks. It
// always encodes as blocks.
type System []ContentBlock

// UnmarshalJSON accepts a string or a list of blocks.
func (s *System) UnmarshalJSON(b []byte) error {
	var c Content
	if err := c.UnmarshalJSON(b); err != nil {
		return err
	}
	*s = System(c)
	return nil
}

// Message is one turn: role user or assistant.
type Message struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
}

// Tool is a client tool.
type Tool struct {
	Type         string          `json:"type,omitempty"` // "custom" or empty; server tools are not supported
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	CacheControl *CacheControl   `json:"cache_control,omitempty"`
}

// ToolChoice constrains tool use.
type ToolChoice struct {
	Type                   string `json:"type"` // auto, any, tool, none
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// Thinking configures extended thinking.
type Thinking struct {
	Type         string `json:"type"` // enabled, disabled (adaptive is passed through raw)
	BudgetTokens int    `json:"budget_tokens,omitempty"`
}

// Metadata is the request metadata.
type Metadata struct {
	UserID string `json:"user_id,omitempty"`
}

// Request is the body of POST /v1/messages (and, without max_tokens and
// sampling fields, of /v1/messages/count_tokens).
type Request struct {
	Model         string      `json:"model"`
	MaxTokens     *int        `json:"max_tokens,omitempty"`
	System        System      `json:"system,omitempty"`
	Messages      []Message   `json:"messages"`
	Tools         []Tool      `json:"tools,omitempty"`
	ToolChoice    *ToolChoice `json:"tool_choice,omitempty"`
	Thinking      *Thinking   `json:"thinking,omitempty"`
	StopSequences []string    `json:"stop_sequences,omitempty"`
	Temperature   *float64    `json:"temperature,omitempty"`
	TopP          *float64    `json:"top_p,omitempty"`
	TopK          *int        `json:"top_k,omitempty"`
	Metadata      *Metadata   `json:"metadata,omitempty"`
	Stream        bool        `json:"stream,omitempty"`
}

// knownRequestFields are the top-level request fields this package maps;
// every other field of a client request goes to llm.Request.Extra.
var knownRequestFields = map[string]bool{
	"model": true, "max_tokens": true, "system": true, "messages": true, "tools": true,
	"tool_choice": true, "thinking": true, "stop_sequences": true, "temperature": true,
	"top_p": true, "top_k": true, "metadata": true, "stream": true,
}

// Usage counts tokens; input_tokens excludes cache reads and writes.
type Usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// Response is a message object: the body of a non-streamed answer and the
// message of a message_start event.
type Response struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"` // "message"
	Role         string         `json:"role"` // "assistant"
	Model        string         `json:"model"`
	Content      []ContentBlock `json:"content"`
	StopReason   *string        `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        Usage          `json:"usage"`
}

// StreamDelta is the delta of a content_block_delta (Type set) or of a
// message_delta (StopReason, StopSequence).
type StreamDelta struct {
	Type         string  `json:"type,omitempty"` // text_delta, input_json_delta, thinking_delta, signature_delta
	Text         string  `json:"text,omitempty"`
	PartialJSON  string  `json:"partial_json,omitempty"`
	Thinking     string  `json:"thinking,omitempty"`
	Signature    string  `json:"signature,omitempty"`
	StopReason   *string `json:"stop_reason,omitempty"`
	StopSequence *string `json:"stop_sequence,omitempty"`
}

// StreamEvent is the data of any SSE event of a streamed answer:
// message_start, content_block_start, content_block_delta,
// content_block_stop, message_delta, message_stop, ping and error.
type StreamEvent struct {
	Type         string        `json:"type"`
	Message      *Response     `json:"message,omitempty"`
	Index        int           `json:"index"`
	ContentBlock *ContentBlock `json:"content_block,omitempty"`
	Delta        *StreamDelta  `json:"delta,omitempty"`
	Usage        *Usage        `json:"usage,omitempty"`
	Error        *ErrorDetail  `json:"error,omitempty"`
}

// ErrorDetail is the error object of an error body or error event.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorResponse is an error body: {"type":"error","error":{...}}.
type ErrorResponse struct {
	Type      string      `json:"type"`
	Error     ErrorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

// CountTokensResponse is the body answering /v1/messages/count_tokens.
type CountTokensResponse struct {
	InputTokens int `json:"input_tokens"`
}

// ModelInfo is one entry of GET /v1/models.
type ModelInfo struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name,omitempty"`
	CreatedAt   string `json:"created_at,omitempty"`
}

// ModelList is the body of GET /v1/models.
type ModelList struct {
	Data    []ModelInfo `json:"data"`
	HasMore bool        `json:"has_more"`
	FirstID string      `json:"first_id,omitempty"`
	LastID  string      `json:"last_id,omitempty"`
}
