package openai

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultBaseURL is OpenAI's API root, the base URL of the openai type
// when a connection names none.
const DefaultBaseURL = "https://api.openai.com/v1"

// Client calls an OpenAI or OpenAI-compatible upstream. It satisfies the
// router's Adapter and Embedder; its Chat and Stream are the shared
// adapter flow (formats/adapter) over the methods of adapter.Format
// below.
type Client struct {
	BaseURL  string // e.g. https://api.openai.com/v1
	APIKey   string
	HTTP     *http.Client
	Headers  map[string]string
	Options  EncodeOptions
	Provider string
}

// Chat sends a non-streaming request.
func (c *Client) Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error) {
	return adapter.Chat(ctx, c, r, model)
}

// Stream sends a streaming request.
func (c *Client) Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error) {
	return adapter.Stream(ctx, c, r, model)
}

// Conn names the connection (adapter.Format).
func (c *Client) Conn() adapter.Conn {
	return adapter.Conn{HTTP: c.HTTP, Provider: c.Provider, DecodeError: DecodeError}
}

// NewRequest encodes r for POST {base}/chat/completions (adapter.Format).
func (c *Client) NewRequest(ctx context.Context, r *llm.Request, model string, stream bool) (*http.Request, error) {
	rr := *r
	rr.Stream = stream
	body, err := EncodeRequest(&rr, model, c.opts(ctx))
	if err != nil {
		return nil, err
	}
	return c.post(ctx, "/chat/completions", body)
}

// DecodeAnswer decodes a whole chat completion (adapter.Format): an
// answer it cannot use is unreadable.
func (c *Client) DecodeAnswer(_ *llm.Request, b []byte) (*llm.Response, error) {
	out, err := DecodeResponse(b)
	if err != nil {
		if le, ok := err.(*llm.Error); ok {
			return nil, upstreamhttp.Unreadable(c.Provider, le)
		}
		return nil, err
	}
	return out, nil
}

// DecodeStream reads a chunk stream (adapter.Format). An OpenAI upstream
// answers a stream request with a stream: Client is no adapter.Replayer.
func (c *Client) DecodeStream(_ *llm.Request, body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, c.Provider)
}

// post builds a POST of body to path. The key goes first, as a Bearer
// token, so the connection's headers may replace it.
func (c *Client) post(ctx context.Context, path string, body []byte) (*http.Request, error) {
	req, err := adapter.NewRequest(ctx, c.Provider, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+path, body, "")
	if err != nil {
		return nil, err
	}
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	adapter.SetHeaders(req.Header, c.Headers)
	return req, nil
}

func (c *Client) opts(ctx context.Context) EncodeOptions {
	o := c.Options
	if llm.DialectOf(ctx) == llm.DialectOpenAI {
		o.Native = true
	}
	return o
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
	req, err := c.post(upstreamhttp.LargeAnswer(ctx), "/embeddings", body)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	raw, err := adapter.Do(c.Conn(), req)
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

// Moderate classifies inputs with POST {base}/moderations: one string
// when the client sent one, else an array of strings, or of parts when
// an input is an image.
func (c *Client) Moderate(ctx context.Context, model string, r *llm.ModerationRequest) (*llm.ModerationResponse, error) {
	body, err := json.Marshal(ModerationRequest{Model: model, Input: ModerationInput(r)})
	if err != nil {
		return nil, err
	}
	req, err := c.post(ctx, "/moderations", body)
	if err != nil {
		return nil, err
	}
	raw, err := adapter.Do(c.Conn(), req)
	if err != nil {
		return nil, err
	}
	var out ModerationResponse
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Results) != len(r.Inputs) {
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not the verdicts asked for"})
	}
	res := &llm.ModerationResponse{ID: out.ID, Model: out.Model, Results: make([]llm.ModerationResult, len(out.Results))}
	for i, v := range out.Results {
		res.Results[i] = llm.ModerationResult{Flagged: v.Flagged, Categories: v.Categories, Scores: v.CategoryScores, InputTypes: v.CategoryAppliedInputTypes}
	}
	return res, nil
}

// GenerateImages makes images with POST {base}/images/generations
// (images.go).
func (c *Client) GenerateImages(ctx context.Context, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	return generateImages(ctx, c, model, r)
}

// EditImages edits images with POST {base}/images/edits, a multipart
// body streamed as it is written (images.go).
func (c *Client) EditImages(ctx context.Context, model string, r *llm.ImageRequest) (*llm.ImageResponse, error) {
	return editImages(ctx, c, model, r)
}
