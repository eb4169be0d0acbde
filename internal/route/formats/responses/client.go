package responses

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultBaseURL is used when Client.BaseURL is empty.
const DefaultBaseURL = "https://api.openai.com/v1"

// Client is the outbound adapter for one Responses upstream connection
// (one credential). It satisfies the router's Adapter. Requests go to
// POST {BaseURL}/responses with store:false and the whole conversation:
// the gateway, not the upstream, keeps conversation state.
type Client struct {
	// BaseURL is the upstream root including the version, e.g.
	// https://api.openai.com/v1. Empty means DefaultBaseURL.
	BaseURL string
	// APIKey is sent as a Bearer token. It is the provider's key: the
	// client's own credentials never reach this adapter.
	APIKey string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Headers are added to every request; they cannot replace the
	// Authorization header.
	Headers map[string]string
	// Provider names the upstream in errors; empty means "openai-responses".
	Provider string
}

func (c *Client) provider() string {
	if c.Provider != "" {
		return c.Provider
	}
	return "openai-responses"
}

func (c *Client) url() string {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	return base + "/responses"
}

// Chat sends req non-streamed as model.
func (c *Client) Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error) {
	return adapter.Chat(ctx, c, r, model)
}

// Stream sends req streamed as model. Errors before the stream starts are
// returned; later ones (an error or response.failed event, a cut
// connection) arrive as an EventError. An upstream that answers a stream
// request with a JSON response object is replayed as a stream.
func (c *Client) Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error) {
	return adapter.Stream(ctx, c, r, model)
}

// Conn names the connection (adapter.Format).
func (c *Client) Conn() adapter.Conn {
	return adapter.Conn{HTTP: c.HTTP, Provider: c.provider(), DecodeError: DecodeError}
}

// NewRequest encodes r for POST {base}/responses (adapter.Format): the
// connection's headers, then the key as a Bearer token, which they cannot
// replace.
func (c *Client) NewRequest(ctx context.Context, r *llm.Request, model string, stream bool) (*http.Request, error) {
	rr := *r
	rr.Stream = stream
	body, err := EncodeRequest(&rr, model, EncodeOptions{Native: IsNative(ctx)})
	if err != nil {
		return nil, err
	}
	req, err := adapter.NewRequest(ctx, c.provider(), http.MethodPost, c.url(), body, adapter.Accept(stream))
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(req.Header, c.Headers)
	adapter.SetKey(req.Header, "Authorization", "Bearer ", c.APIKey)
	return req, nil
}

// DecodeAnswer decodes a whole response object (adapter.Format): a failed
// response (its error, answered) or an unreadable one (labelled so where
// it was found) is the upstream's answer.
func (c *Client) DecodeAnswer(_ *llm.Request, b []byte) (*llm.Response, error) {
	r, err := DecodeResponse(b)
	if le, ok := err.(*llm.Error); ok {
		return nil, upstreamhttp.Answered(c.provider(), le.Status, le)
	}
	return r, err
}

// DecodeStream reads an event stream (adapter.Format).
func (c *Client) DecodeStream(_ *llm.Request, body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, c.provider())
}

// Replay replays a whole response object answering a stream request
// (adapter.Replayer).
func (c *Client) Replay(r *llm.Request, b []byte) (llm.Stream, error) {
	return adapter.Replay(c.DecodeAnswer(r, b))
}
