package responses

import "encoding/json"

// CreateRequest is the body of POST /v1/responses.
type CreateRequest struct {
	Model              string            `json:"model"`
	Input              json.RawMessage   `json:"input,omitempty"`        // a string or a list of items
	Instructions       json.RawMessage   `json:"instructions,omitempty"` // a string (or a list of items)
	Tools              []json.RawMessage `json:"tools,omitempty"`
	ToolChoice         json.RawMessage   `json:"tool_choice,omitempty"`
	ParallelToolCalls  *bool             `json:"parallel_tool_calls,omitempty"`
	MaxOutputTokens    *int              `json:"max_output_tokens,omitempty"`
	Temperature        *float64          `json:"temperature,omitempty"`
	TopP               *float64          `json:"top_p,omitempty"`
	Reasoning          *Reasoning        `json:"reasoning,omitempty"`
	Text               *TextConfig       `json:"text,omitempty"`
	PreviousResponseID string            `json:"previous_response_id,omitempty"`
	Store              *bool             `json:"store,omitempty"`
	Stream             bool              `json:"stream,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
	User               string            `json:"user,omitempty"`
	Include            []string          `json:"include,omitempty"`
	Truncation         string            `json:"truncation,omitempty"`
}

// FunctionTool declares a function ({"type":"function", …}, flat, unlike
// Chat Completions).
type FunctionTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Reasoning configures reasoning models.
type Reasoning struct {
	Effort  string `json:"effort,omitempty"`
	Summary string `json:"summary,omitempty"`
}

// EchoReasoning is the reasoning configuration a response object repeats
// (null fields when unset).
type EchoReasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// TextConfig holds the output format.
type TextConfig struct {
	Format *TextFormat `json:"format,omitempty"`
}

// TextFormat is text, json_object or a named json_schema.
type TextFormat struct {
	Type   string          `json:"type"`
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict *bool           `json:"strict,omitempty"`
}

// Item is one input or output item: a message, a function_call, a
// function_call_output or a reasoning item. Content and Output stay raw
// because each is a string or a list of content parts.
type Item struct {
	Type   string `json:"type,omitempty"`
	ID     string `json:"id,omitempty"`
	Status string `json:"status,omitempty"`
	// message
	Role    string          `json:"role,omitempty"`
	Content json.RawMessage `json:"content,omitempty"`
	// function_call and function_call_output
	CallID    string          `json:"call_id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Arguments string          `json:"arguments,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	// reasoning
	Summary          []SummaryPart `json:"summary,omitempty"`
	EncryptedContent string        `json:"encrypted_content,omitempty"`
}

// MarshalJSON writes the fields each item type requires, even when empty
// (a function call's arguments, a reasoning item's summary, a message's
// content), as SDK parsers expect.
func (it Item) MarshalJSON() ([]byte, error) {
	switch it.Type {
	case "message":
		content := it.Content
		if len(content) == 0 {
			content = json.RawMessage("[]")
		}
		return json.Marshal(struct {
			ID      string          `json:"id,omitempty"`
			Type    string          `json:"type"`
			Status  string          `json:"status,omitempty"`
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}{it.ID, it.Type, it.Status, it.Role, content})
	case "function_call":
		return json.Marshal(struct {
			ID        string `json:"id,omitempty"`
			Type      string `json:"type"`
			Status    string `json:"status,omitempty"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}{it.ID, it.Type, it.Status, it.CallID, it.Name, it.Arguments})
	case "function_call_output":
		out := it.Output
		if len(out) == 0 {
			out = json.RawMessage(`""`)
		}
		return json.Marshal(struct {
			ID     string          `json:"id,omitempty"`
			Type   string          `json:"type"`
			Status string          `json:"status,omitempty"`
			CallID string          `json:"call_id"`
			Output json.RawMessage `json:"output"`
		}{it.ID, it.Type, it.Status, it.CallID, out})
	case "reasoning":
		summary := it.Summary
		if summary == nil {
			summary = []SummaryPart{}
		}
		return json.Marshal(struct {
			ID               string        `json:"id,omitempty"`
			Type             string        `json:"type"`
			Status           string        `json:"status,omitempty"`
			Summary          []SummaryPart `json:"summary"`
			EncryptedContent string        `json:"encrypted_content,omitempty"`
		}{it.ID, it.Type, it.Status, summary, it.EncryptedContent})
	}
	type plain Item
	return json.Marshal(plain(it))
}

// SummaryPart is one part of a reasoning summary ({"type":"summary_text"}).
type SummaryPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ContentPart is one element of a message's (or a function output's)
// content list.
type ContentPart struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
	// input_image
	ImageURL string `json:"image_url,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// input_image and input_file
	FileID string `json:"file_id,omitempty"`
	// input_file
	FileData string `json:"file_data,omitempty"`
	FileURL  string `json:"file_url,omitempty"`
	Filename string `json:"filename,omitempty"`
	// refusal
	Refusal string `json:"refusal,omitempty"`
}

// MarshalJSON writes text (and an output_text's annotations) even when
// empty.
func (c ContentPart) MarshalJSON() ([]byte, error) {
	switch c.Type {
	case "input_text", "summary_text", "reasoning_text":
		return json.Marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{c.Type, c.Text})
	case "output_text":
		return json.Marshal(struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			Annotations []any  `json:"annotations"`
		}{c.Type, c.Text, []any{}})
	}
	type plain ContentPart
	return json.Marshal(plain(c))
}

// Response is the response object (POST /v1/responses answer, the payload
// of response.* stream events, GET /v1/responses/{id}). Request
// parameters are echoed raw.
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       json.RawMessage    `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []Item             `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          *EchoReasoning     `json:"reasoning"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	Text               *TextConfig        `json:"text,omitempty"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              []json.RawMessage  `json:"tools"`
	TopP               *float64           `json:"top_p"`
	Truncation         string             `json:"truncation,omitempty"`
	Usage              *Usage             `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

// ResponseError is the error of a failed response.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete: max_output_tokens
// or content_filter.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// Usage counts tokens. input_tokens includes cached_tokens and
// output_tokens includes reasoning_tokens.
type Usage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  InputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails OutputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

// InputTokensDetails breaks down the input.
type InputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// OutputTokensDetails breaks down the output.
type OutputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// StreamEvent is any server-sent event; only the fields of its type are
// set.
type StreamEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *Response       `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	SummaryIndex   *int            `json:"summary_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	Item           *Item           `json:"item,omitempty"`
	Part           json.RawMessage `json:"part,omitempty"`
	Delta          string          `json:"delta,omitempty"`
	Text           string          `json:"text,omitempty"`
	Arguments      string          `json:"arguments,omitempty"`
	// error events
	Code    *string `json:"code,omitempty"`
	Message string  `json:"message,omitempty"`
	Param   *string `json:"param,omitempty"`
}

// ErrorBody is OpenAI's error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes an error.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}
