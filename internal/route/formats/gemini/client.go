package gemini

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultBaseURL is used when Client leaves BaseURL empty.
const DefaultBaseURL = "https://generativelanguage.googleapis.com/v1beta"

// Client is the outbound adapter for one Gemini API connection (one
// credential). It satisfies the router's Adapter, Embedder and
// TokenCounter.
type Client struct {
	// BaseURL is the API root including its version, e.g.
	// https://generativelanguage.googleapis.com/v1beta. Empty means
	// DefaultBaseURL; a root without a path gets /v1beta.
	BaseURL string
	// APIKey is sent as x-goog-api-key, never in the URL. It is the
	// provider's key: clients' gateway keys never reach this adapter.
	APIKey string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Headers are added to every request; they cannot replace the key.
	Headers map[string]string
	// Options tune request encoding; WithNative on the context sets
	// Native per request.
	Options EncodeOptions
	// Provider names the upstream in errors; empty means "gemini".
	Provider string
}

func (c *Client) options(ctx context.Context) EncodeOptions {
	o := c.Options
	if IsNative(ctx) {
		o.Native = true
	}
	return o
}

func (c *Client) provider() string {
	if c.Provider != "" {
		return c.Provider
	}
	return "gemini"
}

// modelIDRe is what a Gemini model id may be: one path segment of the
// characters Google's ids use.
var modelIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// modelPath is the URL path of a model: "models/" is added unless the id
// already names a resource (models/…, tunedModels/…). The id is one path
// segment of letters, digits, '.', '_' and '-' (escaped all the same): a
// model name from a client cannot reach another upstream path, query or
// fragment.
func (c *Client) modelPath(model string) (string, error) {
	kind, id := "models", model
	if rest, ok := strings.CutPrefix(model, "models/"); ok {
		id = rest
	} else if rest, ok := strings.CutPrefix(model, "tunedModels/"); ok {
		kind, id = "tunedModels", rest
	}
	if !modelIDRe.MatchString(id) {
		return "", &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Provider: c.provider(),
			Message: fmt.Sprintf("model %q is not a Gemini model id (one name of letters, digits, '.', '_' and '-')", model)}
	}
	return "/" + kind + "/" + url.PathEscape(id), nil
}

func (c *Client) url(path string) string {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	if u, err := url.Parse(base); err == nil && u.Host != "" && u.Path == "" {
		base += "/v1beta"
	}
	return base + path
}

// newRequest builds one request: the connection's headers, then the
// key, which they cannot replace.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	req, err := adapter.NewRequest(ctx, c.provider(), method, c.url(path), body, "")
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(req.Header, c.Headers)
	adapter.SetKey(req.Header, "x-goog-api-key", "", c.APIKey)
	return req, nil
}

// tag names the provider in an error of a 2xx answer: an error object or
// a block the upstream answered with, or an answer it could not read
// (labelled so where it was found).
func (c *Client) tag(err error) error {
	if le, ok := err.(*llm.Error); ok {
		return upstreamhttp.Answered(c.provider(), le.Status, le)
	}
	return err
}

// Chat sends req to POST {base}/models/{model}:generateContent.
func (c *Client) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	return adapter.Chat(ctx, c, req, model)
}

// Stream sends req to POST {base}/models/{model}:streamGenerateContent?alt=sse.
// An upstream that answers with JSON (one response or an array) is
// replayed as a stream.
func (c *Client) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	return adapter.Stream(ctx, c, req, model)
}

// Conn names the connection (adapter.Format).
func (c *Client) Conn() adapter.Conn {
	return adapter.Conn{HTTP: c.HTTP, Provider: c.provider(), DecodeError: DecodeError}
}

// NewRequest encodes req for the model's :generateContent, or
// :streamGenerateContent?alt=sse (adapter.Format).
func (c *Client) NewRequest(ctx context.Context, req *llm.Request, model string, stream bool) (*http.Request, error) {
	body, err := EncodeRequest(req, c.options(ctx))
	if err != nil {
		return nil, err
	}
	path, err := c.modelPath(model)
	if err != nil {
		return nil, err
	}
	if stream {
		return c.newRequest(ctx, http.MethodPost, path+":streamGenerateContent?alt=sse", body)
	}
	return c.newRequest(ctx, http.MethodPost, path+":generateContent", body)
}

// DecodeAnswer decodes a whole answer (adapter.Format).
func (c *Client) DecodeAnswer(_ *llm.Request, b []byte) (*llm.Response, error) {
	r, err := DecodeResponse(b)
	if err != nil {
		return nil, c.tag(err)
	}
	return r, nil
}

// DecodeStream reads a server-sent event stream (adapter.Format).
func (c *Client) DecodeStream(_ *llm.Request, body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, c.provider())
}

// Replay replays JSON answering a stream request, one response or an
// array of them (adapter.Replayer).
func (c *Client) Replay(_ *llm.Request, b []byte) (llm.Stream, error) {
	s, err := replayChunks(b, c.provider())
	if err != nil {
		return nil, c.tag(err)
	}
	return s, nil
}

// Embed implements router.Embedder with :batchEmbedContents. Gemini
// reports no usage for embeddings; the gateway estimates it.
func (c *Client) Embed(ctx context.Context, model string, inputs []string, dimensions int) ([][]float32, llm.Usage, error) {
	path, err := c.modelPath(model)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	name := strings.TrimPrefix(path, "/")
	req := BatchEmbedContentsRequest{Requests: make([]EmbedContentRequest, len(inputs))}
	for i, in := range inputs {
		req.Requests[i] = EmbedContentRequest{Model: name, Content: Content{Parts: []Part{{Text: str(in)}}}}
		if dimensions > 0 {
			d := dimensions
			req.Requests[i].OutputDimensionality = &d
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	// Vectors as JSON numbers may be larger than a chat answer.
	hreq, err := c.newRequest(upstreamhttp.LargeAnswer(ctx), http.MethodPost, path+":batchEmbedContents", body)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	b, err := adapter.Do(c.Conn(), hreq)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	var out BatchEmbedContentsResponse
	if err := json.Unmarshal(b, &out); err != nil || len(out.Embeddings) != len(inputs) {
		return nil, llm.Usage{}, c.tag(upstreamError("not the embeddings asked for"))
	}
	vecs := make([][]float32, len(out.Embeddings))
	for i, e := range out.Embeddings {
		vecs[i] = e.Values
	}
	return vecs, llm.Usage{}, nil
}

// Models lists the upstream's model ids (GET {base}/models, following
// pagination), without the "models/" prefix.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	var ids []string
	token := ""
	for page := 0; page < 100; page++ {
		q := url.Values{"pageSize": {"1000"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		req, err := c.newRequest(ctx, http.MethodGet, "/models?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		b, err := adapter.Do(c.Conn(), req)
		if err != nil {
			return nil, err
		}
		var list ListModelsResponse
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, c.tag(upstreamError("malformed model list"))
		}
		for _, m := range list.Models {
			ids = append(ids, strings.TrimPrefix(m.Name, "models/"))
		}
		if list.NextPageToken == "" || list.NextPageToken == token {
			break
		}
		token = list.NextPageToken
	}
	return ids, nil
}

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
	hreq, err := c.newRequest(ctx, http.MethodPost, path+":countTokens", body)
	if err != nil {
		return 0, err
	}
	b, err := adapter.Do(c.Conn(), hreq)
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

// OutputBound is what Client lets a Gemini upstream bill for r:
// maxOutputTokens when the request names it, and beyond it the thinking
// budget sent (thinking tokens are billed as output and not counted in
// maxOutputTokens).
func (c *Client) OutputBound(r *llm.Request) llm.OutputBound {
	var b llm.OutputBound
	if r.MaxTokens != nil && *r.MaxTokens > 0 {
		b.Tokens = *r.MaxTokens
	}
	if rs := r.Reasoning; rs != nil && rs.Enabled {
		switch {
		case rs.BudgetTokens > 0:
			b.Extra = rs.BudgetTokens
		case rs.Effort != "":
			b.Extra = effortBudget(r)
		}
	}
	return b
}
