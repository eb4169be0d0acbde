package responses

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"strings"

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

func (c *Client) post(ctx context.Context, body []byte, stream bool) (*http.Response, error) {
	if stream {
		ctx = upstreamhttp.Streamed(ctx)
	}
	req, err := upstreamhttp.NewRequest(ctx, http.MethodPost, c.url(), bytes.NewReader(body), c.provider())
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Del("Authorization")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	return upstreamhttp.Send(c.HTTP, req, c.provider(), DecodeError)
}

func (c *Client) encode(ctx context.Context, r *llm.Request, model string, stream bool) ([]byte, error) {
	rr := *r
	rr.Stream = stream
	return EncodeRequest(&rr, model, EncodeOptions{Native: IsNative(ctx)})
}

func (c *Client) readResponse(resp *http.Response) (*llm.Response, error) {
	b, err := upstreamhttp.ReadBody(c.HTTP, resp, c.provider())
	if err != nil {
		return nil, err
	}
	r, err := DecodeResponse(b)
	if le, ok := err.(*llm.Error); ok {
		// A failed response (its error, answered) or an unreadable one
		// (labelled so where it was found).
		return nil, upstreamhttp.Answered(c.provider(), le.Status, le)
	}
	return r, err
}

// Chat sends req non-streamed as model.
func (c *Client) Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error) {
	body, err := c.encode(ctx, r, model, false)
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, body, false)
	if err != nil {
		return nil, err
	}
	return c.readResponse(resp)
}

// Stream sends req streamed as model. Errors before the stream starts are
// returned; later ones (an error or response.failed event, a cut
// connection) arrive as an EventError. An upstream that answers a stream
// request with a JSON response object is replayed as a stream.
func (c *Client) Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error) {
	body, err := c.encode(ctx, r, model, true)
	if err != nil {
		return nil, err
	}
	resp, err := c.post(ctx, body, true)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		full, err := c.readResponse(resp)
		if err != nil {
			return nil, err
		}
		return &llm.SliceStream{Events: llm.Events(full)}, nil
	}
	return newStreamDecoder(resp.Body, c.provider()), nil
}
