package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
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

// newRequest builds one request: the connection's headers, then the
// key as a Bearer token, which they cannot replace.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte, accept string) (*http.Request, error) {
	req, err := adapter.NewRequest(ctx, c.provider(), method, c.url(path), body, accept)
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(req.Header, c.Headers)
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	return req, nil
}

// Chat sends req non-streamed to POST /api/chat as model.
func (c *Client) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	return adapter.Chat(ctx, c, req, model)
}

// Stream sends req streamed to POST /api/chat as model. Errors before the
// stream starts are returned; later ones arrive as an EventError. One
// (possibly pretty-printed) JSON object instead of NDJSON is replayed as
// a stream.
func (c *Client) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	return adapter.Stream(ctx, c, req, model)
}

// Conn names the connection (adapter.Format).
func (c *Client) Conn() adapter.Conn {
	return adapter.Conn{HTTP: c.HTTP, Provider: c.provider(), DecodeError: DecodeError}
}

// NewRequest encodes req for POST /api/chat (adapter.Format).
func (c *Client) NewRequest(ctx context.Context, req *llm.Request, model string, stream bool) (*http.Request, error) {
	r := *req
	r.Stream = stream
	body, err := EncodeRequest(&r, model, c.options(ctx))
	if err != nil {
		return nil, err
	}
	accept := "application/json"
	if stream {
		accept = "application/x-ndjson"
	}
	return c.newRequest(ctx, http.MethodPost, "/api/chat", body, accept)
}

// DecodeAnswer decodes a whole chat answer to req, minting the tool-call
// ids req's own calls do not take (adapter.Format).
func (c *Client) DecodeAnswer(req *llm.Request, b []byte) (*llm.Response, error) {
	out, err := decodeResponse(b, requestMinter(req))
	if err != nil {
		return nil, c.tag(err)
	}
	return out, nil
}

// DecodeStream reads an NDJSON stream (adapter.Format).
func (c *Client) DecodeStream(req *llm.Request, body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, requestMinter(req), c.provider())
}

// Replay replays one JSON answer to a stream request (adapter.Replayer).
func (c *Client) Replay(req *llm.Request, b []byte) (llm.Stream, error) {
	return adapter.Replay(c.DecodeAnswer(req, b))
}

// Embed implements router.Embedder through POST /api/embed.
func (c *Client) Embed(ctx context.Context, model string, inputs []string, dimensions int) ([][]float32, llm.Usage, error) {
	in, _ := json.Marshal(inputs)
	body, err := json.Marshal(EmbedRequest{Model: model, Input: in, Dimensions: dimensions})
	if err != nil {
		return nil, llm.Usage{}, err
	}
	// Vectors as JSON numbers may be larger than a chat answer.
	req, err := c.newRequest(upstreamhttp.LargeAnswer(ctx), http.MethodPost, "/api/embed", body, "application/json")
	if err != nil {
		return nil, llm.Usage{}, err
	}
	raw, err := adapter.Do(c.Conn(), req)
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
	req, err := c.newRequest(ctx, http.MethodGet, "/api/tags", nil, "application/json")
	if err != nil {
		return nil, err
	}
	b, err := adapter.Do(c.Conn(), req)
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
