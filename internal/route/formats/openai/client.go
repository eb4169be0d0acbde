package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

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

// Client calls an OpenAI or OpenAI-compatible upstream.
type Client struct {
	BaseURL  string // e.g. https://api.openai.com/v1
	APIKey   string
	HTTP     *http.Client
	Headers  map[string]string
	Options  EncodeOptions
	Provider string
}

func (c *Client) post(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := upstreamhttp.NewRequest(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(body), c.Provider)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	return upstreamhttp.Send(c.HTTP, req, c.Provider, DecodeError)
}

// Chat sends a non-streaming request.
func (c *Client) Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error) {
	rr := *r
	rr.Stream = false
	body, err := EncodeRequest(&rr, model, c.opts(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	b, err := upstreamhttp.ReadBody(c.HTTP, resp, c.Provider)
	if err != nil {
		return nil, err
	}
	out, err := DecodeResponse(b)
	if err != nil {
		if le, ok := err.(*llm.Error); ok {
			return nil, upstreamhttp.Unreadable(c.Provider, le)
		}
		return nil, err
	}
	return out, nil
}

// Stream sends a streaming request.
func (c *Client) Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error) {
	rr := *r
	rr.Stream = true
	body, err := EncodeRequest(&rr, model, c.opts(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.post(upstreamhttp.Streamed(ctx), "/chat/completions", body)
	if err != nil {
		return nil, err
	}
	return newStreamDecoder(resp.Body, c.Provider), nil
}

func (c *Client) opts(ctx context.Context) EncodeOptions {
	o := c.Options
	if llm.DialectOf(ctx) == llm.DialectOpenAI {
		o.Native = true
	}
	return o
}

// DefaultBaseURL is OpenAI's API root, the base URL of the openai type
// when a connection names none.
const DefaultBaseURL = "https://api.openai.com/v1"
