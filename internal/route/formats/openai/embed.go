package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/omniedge/omni/internal/route/llm"
)

// DecodeEmbeddingRequest validates a client's embedding request and
// returns its inputs.
func DecodeEmbeddingRequest(body []byte) (*EmbeddingRequest, []string, error) {
	var req EmbeddingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, invalid("request body is not a valid embedding request: %v", err)
	}
	if req.Model == "" {
		return nil, nil, invalid("model: required")
	}
	if err := llm.CheckModel("model", req.Model); err != nil {
		return nil, nil, err
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, nil, invalid("encoding_format: %q is not float or base64", req.EncodingFormat)
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
		return nil, nil, invalid("input: must be a string or a non-empty array of strings (token arrays are not supported)")
	}
	return &req, many, nil
}

// EncodeEmbeddingResponse renders vectors in the requested encoding.
func EncodeEmbeddingResponse(model, encoding string, vectors [][]float32, u llm.Usage) ([]byte, error) {
	out := EmbeddingResponse{Object: "list", Model: model, Usage: EmbeddingUsage{PromptTokens: u.PromptTokens(), TotalTokens: u.PromptTokens()}}
	for i, v := range vectors {
		d := EmbeddingData{Object: "embedding", Index: i}
		if encoding == "base64" {
			b := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			d.Embedding = base64.StdEncoding.EncodeToString(b)
		} else {
			d.Embedding = v
		}
		out.Data = append(out.Data, d)
	}
	return json.Marshal(out)
}
