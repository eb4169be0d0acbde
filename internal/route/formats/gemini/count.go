package gemini

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// CountTokens asks POST {base}/models/{model}:countTokens how many input
// tokens req has for model (the router's TokenCounter).
func (c *Client) CountTokens(ctx context.Context, req *llm.Request, model string) (int, error) {
	path, err := c.modelPath(model)
	if err != nil {
		return 0, err
	}
	body, err := encodeCountTokens(req, strings.TrimPrefix(path, "/"), c.options(ctx))
	if err != nil {
		return 0, err
	}
	resp, err := c.do(ctx, http.MethodPost, path+":countTokens", body)
	if err != nil {
		return 0, err
	}
	b, err := c.read(resp)
	if err != nil {
		return 0, err
	}
	var out struct {
		TotalTokens *int `json:"totalTokens"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.TotalTokens == nil || *out.TotalTokens < 0 {
		return 0, c.tag(upstreamError("malformed countTokens answer"))
	}
	return *out.TotalTokens, nil
}

// encodeCountTokens writes the body of :countTokens for the model
// resource name (models/…): {contents} when the request is only turns,
// else {generateContentRequest} with the model, the system instruction
// and the tools, which count too. Generation settings add no input and
// are left out, as are fields the canonical model does not carry.
func encodeCountTokens(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	w, err := wireRequest(r, opts)
	if err != nil {
		return nil, err
	}
	w.GenerationConfig = nil
	if w.SystemInstruction == nil && len(w.Tools) == 0 {
		return json.Marshal(CountTokensRequest{Contents: w.Contents})
	}
	w.Model = model
	return json.Marshal(CountTokensRequest{GenerateContentRequest: w})
}
