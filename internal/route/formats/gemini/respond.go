package gemini

import (
	"encoding/json"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// partsOut renders canonical answer content as Gemini parts. Redacted
// thinking has no Gemini form and is left out, as are signatures that are
// not base64.
func partsOut(content []llm.Part) []Part {
	out := []Part{}
	for _, p := range content {
		var gp Part
		switch p.Type {
		case llm.PartText:
			gp = Part{Text: str(p.Text)}
		case llm.PartThinking:
			gp = Part{Text: str(p.Text), Thought: true}
		case llm.PartToolCall:
			if p.ToolCall == nil {
				continue
			}
			gp = Part{FunctionCall: &FunctionCall{ID: p.ToolCall.ID, Name: p.ToolCall.Name, Args: argsObject(p.ToolCall.Arguments)}}
		case llm.PartImage, llm.PartAudio, llm.PartFile:
			if p.Media == nil {
				continue
			}
			gp = mediaOut(p)
		default:
			continue
		}
		if validSignature(p.Signature) {
			gp.ThoughtSignature = p.Signature
		}
		out = append(out, gp)
	}
	return out
}

// EncodeResponse renders a canonical answer as a GenerateContentResponse.
// Tool use is reported as STOP, as Gemini does.
func EncodeResponse(r *llm.Response) ([]byte, error) {
	return json.Marshal(GenerateContentResponse{
		Candidates: []Candidate{{Content: &Content{Role: "model", Parts: partsOut(r.Content)},
			FinishReason: finishReasonOut(r.StopReason)}},
		UsageMetadata: usageOut(r.Usage), ModelVersion: r.Model, ResponseID: r.ID,
	})
}

// statusName is the google.rpc.Code name of an HTTP status.
func statusName(status int, t llm.ErrorType) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case 499:
		return "CANCELLED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable, 529:
		return "UNAVAILABLE"
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	switch t {
	case llm.ErrOverloaded:
		return "UNAVAILABLE"
	case llm.ErrRateLimit:
		return "RESOURCE_EXHAUSTED"
	case llm.ErrTimeout:
		return "DEADLINE_EXCEEDED"
	}
	if status >= 400 && status < 500 {
		return "FAILED_PRECONDITION"
	}
	return "INTERNAL"
}

// EncodeError renders an error in Google's shape. Anthropic's 529 becomes
// 503, which Google clients know.
func EncodeError(e *llm.Error) (int, []byte) {
	status := e.Status
	switch {
	case status == 0:
		status = http.StatusBadGateway
	case status == 529:
		status = http.StatusServiceUnavailable
	}
	b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: status, Message: e.Message, Status: statusName(status, e.Type)}})
	return status, b
}

// EncodeCountTokens renders a token count.
func EncodeCountTokens(n int) []byte {
	b, _ := json.Marshal(CountTokensResponse{TotalTokens: n})
	return b
}

// ModelEntry describes a gateway model id in Gemini's list shape.
func ModelEntry(id string, embedding bool) Model {
	methods := []string{"generateContent", "streamGenerateContent", "countTokens"}
	if embedding {
		methods = []string{"embedContent", "batchEmbedContents"}
	}
	return Model{Name: "models/" + id, BaseModelID: id, DisplayName: id, SupportedGenerationMethods: methods}
}
