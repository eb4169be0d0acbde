package ollama

import (
	"encoding/json"
	"time"
)

// APIVersion is the Ollama API version the gateway speaks, reported by
// GET /api/version.
const APIVersion = "0.17.4"

// ChatRequest is the body of POST /api/chat.
type ChatRequest struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`
	Tools    []Tool    `json:"tools,omitempty"`
	// Stream absent means true.
	Stream *bool `json:"stream,omitempty"`
	// Format is "json" or a JSON schema object.
	Format json.RawMessage `json:"format,omitempty"`
	// Options is a free-form object (temperature, num_predict, num_ctx, …);
	// clients send null when they set none.
	Options json.RawMessage `json:"options,omitempty"`
	// Think is a bool or "low", "medium", "high".
	Think     json.RawMessage `json:"think,omitempty"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
}

// Message is one chat turn. Content is always present, possibly empty.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking,omitempty"`
	Images     []string   `json:"images,omitempty"` // base64, no data: prefix
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolName   string     `json:"tool_name,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a model's call of a function; ids are optional.
type ToolCall struct {
	ID       string           `json:"id,omitempty"`
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction holds the call; Arguments is a JSON object.
type ToolCallFunction struct {
	Index     int             `json:"index"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// Tool declares a function the model may call.
type Tool struct {
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction is a tool's name, description and JSON Schema parameters.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// Options are the model options the gateway maps; others pass through
// untouched to Ollama upstreams.
type Options struct {
	Temperature      *float64 `json:"temperature,omitempty"`
	TopP             *float64 `json:"top_p,omitempty"`
	TopK             *int     `json:"top_k,omitempty"`
	NumPredict       *int     `json:"num_predict,omitempty"`
	Stop             []string `json:"stop,omitempty"`
	Seed             *int64   `json:"seed,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
}

// ChatResponse is one answer object: the whole answer (stream false) or
// one NDJSON line of a stream. Durations are nanoseconds.
type ChatResponse struct {
	Model              string    `json:"model"`
	CreatedAt          time.Time `json:"created_at"`
	Message            Message   `json:"message"`
	Done               bool      `json:"done"`
	DoneReason         string    `json:"done_reason,omitempty"`
	TotalDuration      int64     `json:"total_duration,omitempty"`
	LoadDuration       int64     `json:"load_duration,omitempty"`
	PromptEvalCount    int       `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64     `json:"prompt_eval_duration,omitempty"`
	EvalCount          int       `json:"eval_count,omitempty"`
	EvalDuration       int64     `json:"eval_duration,omitempty"`
}

// ErrorBody is Ollama's error shape, as a response body or as an NDJSON
// line inside a stream. Status appears on some in-stream errors.
type ErrorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status,omitempty"`
}

// TagsResponse is the answer of GET /api/tags.
type TagsResponse struct {
	Models []ModelEntry `json:"models"`
}

// ModelEntry is one listed model.
type ModelEntry struct {
	Name       string       `json:"name"`
	Model      string       `json:"model"`
	ModifiedAt time.Time    `json:"modified_at"`
	Size       int64        `json:"size"`
	Digest     string       `json:"digest"`
	Details    ModelDetails `json:"details"`
}

// ModelDetails describes a listed model.
type ModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// EmbedRequest is the body of POST /api/embed; Input is a string or an
// array of strings.
type EmbedRequest struct {
	Model      string          `json:"model"`
	Input      json.RawMessage `json:"input"`
	Dimensions int             `json:"dimensions,omitempty"`
	Truncate   *bool           `json:"truncate,omitempty"`
	KeepAlive  json.RawMessage `json:"keep_alive,omitempty"`
	Options    json.RawMessage `json:"options,omitempty"`
}

// EmbedResponse is the answer of POST /api/embed.
type EmbedResponse struct {
	Model           string      `json:"model"`
	Embeddings      [][]float32 `json:"embeddings"`
	TotalDuration   int64       `json:"total_duration,omitempty"`
	LoadDuration    int64       `json:"load_duration,omitempty"`
	PromptEvalCount int         `json:"prompt_eval_count,omitempty"`
}

// VersionResponse is the answer of GET /api/version.
type VersionResponse struct {
	Version string `json:"version"`
}

// GenerateRequest is the body of POST /api/generate: one prompt, no
// conversation.
type GenerateRequest struct {
	Model  string `json:"model"`
	Prompt string `json:"prompt"`
	// Suffix asks for fill-in-the-middle, which the gateway refuses.
	Suffix string `json:"suffix,omitempty"`
	System string `json:"system,omitempty"`
	// Template and Raw shape the prompt Ollama renders for its own
	// models; the gateway sends the prompt as the user's message.
	Template string `json:"template,omitempty"`
	Raw      bool   `json:"raw,omitempty"`
	// Context is the token array an earlier answer returned; accepted
	// and ignored.
	Context   json.RawMessage `json:"context,omitempty"`
	Stream    *bool           `json:"stream,omitempty"`
	Format    json.RawMessage `json:"format,omitempty"`
	Options   json.RawMessage `json:"options,omitempty"`
	Think     json.RawMessage `json:"think,omitempty"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
	Images    []string        `json:"images,omitempty"`
}

// GenerateResponse is one /api/generate answer object: the whole answer
// (stream false) or one NDJSON line. The gateway never sets Context.
type GenerateResponse struct {
	Model              string     `json:"model"`
	CreatedAt          time.Time  `json:"created_at"`
	Response           string     `json:"response"`
	Thinking           string     `json:"thinking,omitempty"`
	ToolCalls          []ToolCall `json:"tool_calls,omitempty"`
	Done               bool       `json:"done"`
	DoneReason         string     `json:"done_reason,omitempty"`
	Context            []int      `json:"context,omitempty"`
	TotalDuration      int64      `json:"total_duration,omitempty"`
	LoadDuration       int64      `json:"load_duration,omitempty"`
	PromptEvalCount    int        `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64      `json:"prompt_eval_duration,omitempty"`
	EvalCount          int        `json:"eval_count,omitempty"`
	EvalDuration       int64      `json:"eval_duration,omitempty"`
}

// ShowRequest is the body of POST /api/show (name is the older spelling
// of model).
type ShowRequest struct {
	Model   string `json:"model"`
	Name    string `json:"name,omitempty"`
	Verbose bool   `json:"verbose,omitempty"`
}

// ShowResponse is the answer of POST /api/show, as far as a gateway
// knows a model: no modelfile, template, license or tensors of its own.
type ShowResponse struct {
	Modelfile    string         `json:"modelfile"`
	Parameters   string         `json:"parameters"`
	Template     string         `json:"template"`
	Details      ModelDetails   `json:"details"`
	ModelInfo    map[string]any `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	ModifiedAt   time.Time      `json:"modified_at"`
}

// PSResponse is the answer of GET /api/ps.
type PSResponse struct {
	Models []PSEntry `json:"models"`
}

// PSEntry is one "running" model.
type PSEntry struct {
	Name          string       `json:"name"`
	Model         string       `json:"model"`
	Size          int64        `json:"size"`
	Digest        string       `json:"digest"`
	Details       ModelDetails `json:"details"`
	ExpiresAt     time.Time    `json:"expires_at"`
	SizeVRAM      int64        `json:"size_vram"`
	ContextLength int          `json:"context_length"`
}

// EmbeddingsRequest is the body of the legacy POST /api/embeddings: one
// prompt, one vector.
type EmbeddingsRequest struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
	Options   json.RawMessage `json:"options,omitempty"`
}

// EmbeddingsResponse is the answer of POST /api/embeddings.
type EmbeddingsResponse struct {
	Embedding []float64 `json:"embedding"`
}
