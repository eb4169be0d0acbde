package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultBaseURL is a local Ollama server.
const DefaultBaseURL = "http://localhost:11434"

// Client is the outbound adapter for one Ollama upstream connection. It
// satisfies the router's Adapter and Embedder.
type Client struct {
	// BaseURL is the server root, e.g. http://localhost:11434; a trailing
	// /api is tolerated. Empty means DefaultBaseURL.
	BaseURL string
	// APIKey, when set, is sent as Authorization: Bearer (ollama.com, or a
	// proxy in front of a server). Local servers need none.
	APIKey string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Headers are added to every request; they cannot replace the key.
	Headers map[string]string
	// Options tune request encoding; WithNative on the context sets
	// Native per request.
	Options EncodeOptions
	// Provider names the upstream in errors; empty means "ollama".
	Provider string
}

func (c *Client) provider() string {
	if c.Provider != "" {
		return c.Provider
	}
	return "ollama"
}

func (c *Client) url(path string) string {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	return strings.TrimSuffix(base, "/api") + path
}

func (c *Client) options(ctx context.Context) EncodeOptions {
	o := c.Options
	if IsNative(ctx) {
		o.Native = true
	}
	return o
}

// tag names the provider in an error of a 2xx answer: an error object
// the upstream answered with, or an answer it could not read (labelled
// so where it was found).
func (c *Client) tag(err error) error {
	var le *llm.Error
	if errors.As(err, &le) {
		return upstreamhttp.Answered(c.provider(), le.Status, le)
	}
	return err
}

// do sends one request; a non-2xx answer is decoded into *llm.Error.
func (c *Client) do(ctx context.Context, method, path string, body []byte, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := upstreamhttp.NewRequest(ctx, method, c.url(path), rd, c.provider())
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Del("Authorization")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	return upstreamhttp.Send(c.HTTP, req, c.provider(), DecodeError)
}

func (c *Client) read(resp *http.Response) ([]byte, error) {
	return upstreamhttp.ReadBody(c.HTTP, resp, c.provider())
}

// Chat sends req non-streamed to POST /api/chat as model.
func (c *Client) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	r := *req
	r.Stream = false
	body, err := EncodeRequest(&r, model, c.options(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/api/chat", body, "application/json")
	if err != nil {
		return nil, err
	}
	b, err := c.read(resp)
	if err != nil {
		return nil, err
	}
	out, err := decodeResponse(b, requestMinter(req))
	if err != nil {
		return nil, c.tag(err)
	}
	return out, nil
}

// Stream sends req streamed to POST /api/chat as model. Errors before the
// stream starts are returned; later ones arrive as an EventError.
func (c *Client) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	r := *req
	r.Stream = true
	body, err := EncodeRequest(&r, model, c.options(ctx))
	if err != nil {
		return nil, err
	}
	resp, err := c.do(upstreamhttp.Streamed(ctx), http.MethodPost, "/api/chat", body, "application/x-ndjson")
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		// One (possibly pretty-printed) object instead of NDJSON.
		b, err := c.read(resp)
		if err != nil {
			return nil, err
		}
		full, err := decodeResponse(b, requestMinter(req))
		if err != nil {
			return nil, c.tag(err)
		}
		return &llm.SliceStream{Events: llm.Events(full)}, nil
	}
	return newStreamDecoder(resp.Body, requestMinter(req), c.provider()), nil
}

// Embed implements router.Embedder through POST /api/embed.
func (c *Client) Embed(ctx context.Context, model string, inputs []string, dimensions int) ([][]float32, llm.Usage, error) {
	in, _ := json.Marshal(inputs)
	body, err := json.Marshal(EmbedRequest{Model: model, Input: in, Dimensions: dimensions})
	if err != nil {
		return nil, llm.Usage{}, err
	}
	// Vectors as JSON numbers may be larger than a chat answer.
	resp, err := c.do(upstreamhttp.LargeAnswer(ctx), http.MethodPost, "/api/embed", body, "application/json")
	if err != nil {
		return nil, llm.Usage{}, err
	}
	raw, err := c.read(resp)
	if err != nil {
		return nil, llm.Usage{}, err
	}
	var out EmbedResponse
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Embeddings) != len(inputs) {
		return nil, llm.Usage{}, upstreamhttp.Unreadable(c.provider(), &llm.Error{Status: http.StatusBadGateway, Message: "not the embeddings asked for"})
	}
	return out.Embeddings, llm.Usage{InputTokens: out.PromptEvalCount}, nil
}

// Models lists the upstream's models (GET /api/tags).
func (c *Client) Models(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/tags", nil, "application/json")
	if err != nil {
		return nil, err
	}
	b, err := c.read(resp)
	if err != nil {
		return nil, err
	}
	var list TagsResponse
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, upstreamhttp.Unreadable(c.provider(), &llm.Error{Status: http.StatusBadGateway, Message: "not a model list"})
	}
	ids := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		id := m.Model
		if id == "" {
			id = m.Name
		}
		ids = append(ids, id)
	}
	return ids, nil
}
