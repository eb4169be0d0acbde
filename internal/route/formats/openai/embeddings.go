package openai

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"sort"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format,omitempty"`
	Dimensions     int             `json:"dimensions,omitempty"`
	User           string          `json:"user,omitempty"`
}

// EmbeddingResponse is the answer; Embedding is a float array or, with
// encoding_format base64, little-endian float32 bytes in base64.
type EmbeddingResponse struct {
	Object string          `json:"object"`
	Data   []EmbeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  EmbeddingUsage  `json:"usage"`
}

// EmbeddingData is one vector.
type EmbeddingData struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingUsage counts input tokens.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

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

// Embed implements router.Embedder against an OpenAI-format upstream,
// always asking for floats.
func (c *Client) Embed(ctx context.Context, model string, inputs []string, dimensions int) ([][]float32, llm.Usage, error) {
	in, _ := json.Marshal(inputs)
	body, err := json.Marshal(EmbeddingRequest{Model: model, Input: in, EncodingFormat: "float", Dimensions: dimensions})
	if err != nil {
		return nil, llm.Usage{}, err
	}
	// Vectors as JSON numbers may be larger than a chat answer.
	resp, err := c.post(upstreamhttp.LargeAnswer(ctx), "/embeddings", body)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	raw, err := upstreamhttp.ReadBody(c.HTTP, resp, c.Provider)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage EmbeddingUsage `json:"usage"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Data) != len(inputs) {
		return nil, llm.Usage{}, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not the embeddings asked for"})
	}
	sort.Slice(out.Data, func(i, j int) bool { return out.Data[i].Index < out.Data[j].Index })
	vecs := make([][]float32, len(out.Data))
	for i, d := range out.Data {
		vecs[i] = d.Embedding
	}
	return vecs, llm.Usage{InputTokens: out.Usage.PromptTokens}, nil
}
