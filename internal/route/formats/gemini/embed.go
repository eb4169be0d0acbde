package gemini

import (
	"encoding/json"
	"fmt"
	"strings"
)

// embedText joins the text parts of an embedding request's content.
func embedText(c Content, field string) (string, error) {
	var texts []string
	for j, p := range c.Parts {
		if p.Text == nil {
			return "", invalid("%s.content.parts[%d]: only text can be embedded", field, j)
		}
		texts = append(texts, *p.Text)
	}
	if len(texts) == 0 {
		return "", invalid("%s.content.parts: at least one text part is required", field)
	}
	return strings.Join(texts, "\n"), nil
}

// DecodeEmbedContent reads an :embedContent body: the text to embed and
// the requested dimensions (0: the model's default).
func DecodeEmbedContent(body []byte) (string, int, error) {
	var in EmbedContentRequest
	if err := json.Unmarshal(camelize(body), &in); err != nil {
		return "", 0, invalid("request body is not a valid EmbedContentRequest: %v", err)
	}
	text, err := embedText(in.Content, "request")
	if err != nil {
		return "", 0, err
	}
	dims := 0
	if in.OutputDimensionality != nil {
		if dims = *in.OutputDimensionality; dims < 0 {
			return "", 0, invalid("outputDimensionality: must be positive")
		}
	}
	return text, dims, nil
}

// DecodeBatchEmbedContents reads a :batchEmbedContents body. Every request
// must ask for the same dimensions.
func DecodeBatchEmbedContents(body []byte) ([]string, int, error) {
	var in BatchEmbedContentsRequest
	if err := json.Unmarshal(camelize(body), &in); err != nil {
		return nil, 0, invalid("request body is not a valid BatchEmbedContentsRequest: %v", err)
	}
	if len(in.Requests) == 0 {
		return nil, 0, invalid("requests: at least one request is required")
	}
	var inputs []string
	dims := -1
	for i, r := range in.Requests {
		field := fmt.Sprintf("requests[%d]", i)
		text, err := embedText(r.Content, field)
		if err != nil {
			return nil, 0, err
		}
		d := 0
		if r.OutputDimensionality != nil {
			if d = *r.OutputDimensionality; d < 0 {
				return nil, 0, invalid("%s.outputDimensionality: must be positive", field)
			}
		}
		if dims >= 0 && d != dims {
			return nil, 0, invalid("%s.outputDimensionality: every request must ask for the same dimensions", field)
		}
		dims = d
		inputs = append(inputs, text)
	}
	return inputs, dims, nil
}

// EncodeEmbedContent renders one vector.
func EncodeEmbedContent(v []float32) ([]byte, error) {
	return json.Marshal(EmbedContentResponse{Embedding: ContentEmbedding{Values: nonNil(v)}})
}

// EncodeBatchEmbedContents renders vectors in input order.
func EncodeBatchEmbedContents(vs [][]float32) ([]byte, error) {
	out := BatchEmbedContentsResponse{Embeddings: make([]ContentEmbedding, len(vs))}
	for i, v := range vs {
		out.Embeddings[i] = ContentEmbedding{Values: nonNil(v)}
	}
	return json.Marshal(out)
}

func nonNil(v []float32) []float32 {
	if v == nil {
		return []float32{}
	}
	return v
}
