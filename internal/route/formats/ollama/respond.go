package ollama

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

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
