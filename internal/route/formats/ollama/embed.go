package ollama

import (
	"encoding/json"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// DecodeEmbeddingsRequest validates a client's legacy /api/embeddings
// body.
func DecodeEmbeddingsRequest(body []byte) (*EmbeddingsRequest, error) {
	var req EmbeddingsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, invalid("request body is not a valid Ollama embeddings request: %v", err)
	}
	if req.Model == "" {
		return nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", req.Model); err != nil {
		return nil, err
	}
	return &req, nil
}

// EncodeEmbeddingsResponse renders one vector as an /api/embeddings
// answer (an empty one for an empty prompt, as Ollama answers).
func EncodeEmbeddingsResponse(vector []float32) []byte {
	out := EmbeddingsResponse{Embedding: make([]float64, len(vector))}
	for i, v := range vector {
		out.Embedding[i] = float64(v)
	}
	b, _ := json.Marshal(out)
	return b
}

// DecodeEmbedRequest validates a client's /api/embed body and returns its
// inputs.
func DecodeEmbedRequest(body []byte) (*EmbedRequest, []string, error) {
	var req EmbedRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, invalid("request body is not a valid Ollama embed request: %v", err)
	}
	if req.Model == "" {
		return nil, nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", req.Model); err != nil {
		return nil, nil, err
	}
	if req.Dimensions < 0 {
		return nil, nil, invalid("dimensions: must be positive")
	}
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		return &req, []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(req.Input, &many); err != nil || len(many) == 0 {
		return nil, nil, invalid("input: must be a string or a non-empty array of strings")
	}
	return &req, many, nil
}

// EncodeEmbedResponse renders vectors as an /api/embed answer.
func EncodeEmbedResponse(model string, vectors [][]float32, u llm.Usage, total time.Duration) ([]byte, error) {
	if vectors == nil {
		vectors = [][]float32{}
	}
	return json.Marshal(EmbedResponse{Model: model, Embeddings: vectors, PromptEvalCount: u.PromptTokens(), TotalDuration: int64(total)})
}
