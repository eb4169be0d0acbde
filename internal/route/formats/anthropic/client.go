package anthropic

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultBaseURL and DefaultVersion are used when Client leaves them empty.
const (
	DefaultBaseURL = "https://api.anthropic.com"
	DefaultVersion = "2023-06-01"
)

// Client is the outbound adapter for one Anthropic-compatible upstream
// connection (one credential). It satisfies the router's Adapter and
// TokenCounter.
type Client struct {
	// BaseURL is the upstream root, e.g. https://api.anthropic.com; a
	// trailing /v1 is tolerated. Empty means DefaultBaseURL.
	BaseURL string
	// APIKey is sent as x-api-key. It is the provider's key: the client's
	// own credentials never reach this adapter.
	APIKey string
	// Version is sent as anthropic-version; empty means DefaultVersion.
	Version string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Headers are added to every request (anthropic-beta, proxies'
	// headers); they may override anthropic-version but not x-api-key.
	Headers map[string]string
	// Options tune request encoding; WithNative on the context sets
	// Native per request.
	Options EncodeOptions
	// Provider names the upstream in errors; empty means "anthropic".
	Provider string
}

func (c *Client) provider() string {
	if c.Provider != "" {
		return c.Provider
	}
	return "anthropic"
}

func (c *Client) url(path string) string {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	base = strings.TrimSuffix(base, "/v1")
	return base + path
}

func (c *Client) options(ctx context.Context) EncodeOptions {
	o := c.Options
	if IsNative(ctx) {
		o.Native = true
	}
	return o
}

// Chat sends req non-streamed to POST /v1/messages as model.
func (c *Client) Chat(ctx context.Context, req *llm.Request, model string) (*llm.Response, error) {
	return adapter.Chat(ctx, c, req, model)
}

// Stream sends req streamed to POST /v1/messages as model. Errors before
// the stream starts are returned; later ones (an error event, a cut
// connection) arrive as an EventError. An upstream that answers a stream
// request with a JSON message is replayed as a stream.
func (c *Client) Stream(ctx context.Context, req *llm.Request, model string) (llm.Stream, error) {
	return adapter.Stream(ctx, c, req, model)
}

// Conn names the connection (adapter.Format).
func (c *Client) Conn() adapter.Conn {
	return adapter.Conn{HTTP: c.HTTP, Provider: c.provider(), DecodeError: DecodeError}
}

// NewRequest encodes req for POST /v1/messages (adapter.Format).
func (c *Client) NewRequest(ctx context.Context, req *llm.Request, model string, stream bool) (*http.Request, error) {
	r := *req
	r.Stream = stream
	body, err := EncodeRequest(&r, model, c.options(ctx))
	if err != nil {
		return nil, err
	}
	return c.newRequest(ctx, http.MethodPost, "/v1/messages", body, stream)
}

// DecodeAnswer decodes a whole message (adapter.Format): an error object
// is the upstream's answer, anything else it could not use unreadable.
func (c *Client) DecodeAnswer(_ *llm.Request, b []byte) (*llm.Response, error) {
	r, answered, err := decodeResponse(b)
	if le, ok := err.(*llm.Error); ok {
		if answered {
			return nil, upstreamhttp.Answered(c.provider(), le.Status, le)
		}
		return nil, upstreamhttp.Unreadable(c.provider(), le)
	}
	return r, err
}

// DecodeStream reads an event stream (adapter.Format).
func (c *Client) DecodeStream(_ *llm.Request, body io.ReadCloser) llm.Stream {
	return newStreamDecoder(body, c.provider())
}

// Replay replays a whole message answering a stream request
// (adapter.Replayer).
func (c *Client) Replay(req *llm.Request, b []byte) (llm.Stream, error) {
	return adapter.Replay(c.DecodeAnswer(req, b))
}

// newRequest builds one request: anthropic-version (which the
// connection's headers may replace), the connection's headers, the
// client's anthropic-beta flags (WithBeta) merged into theirs, and the
// key, which they cannot replace.
func (c *Client) newRequest(ctx context.Context, method, path string, body []byte, stream bool) (*http.Request, error) {
	req, err := adapter.NewRequest(ctx, c.provider(), method, c.url(path), body, adapter.Accept(stream))
	if err != nil {
		return nil, err
	}
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	req.Header.Set("anthropic-version", version)
	adapter.SetHeaders(req.Header, c.Headers)
	if beta := betaFromContext(ctx); beta != "" {
		req.Header.Set("anthropic-beta", mergeFlags(req.Header.Get("anthropic-beta"), beta))
	}
	adapter.SetKey(req.Header, "x-api-key", "", c.APIKey)
	return req, nil
}

// mergeFlags joins comma-separated flag lists, dropping duplicates.
func mergeFlags(lists ...string) string {
	var out []string
	seen := map[string]bool{}
	for _, l := range lists {
		for _, f := range strings.Split(l, ",") {
			if f = strings.TrimSpace(f); f != "" && !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return strings.Join(out, ",")
}

// CountTokens asks POST /v1/messages/count_tokens how many input tokens
// req has for model (the router's TokenCounter). An answer without
// input_tokens is malformed: it is not a count of 0.
func (c *Client) CountTokens(ctx context.Context, req *llm.Request, model string) (int, error) {
	body, err := encodeCountTokens(req, model, c.options(ctx))
	if err != nil {
		return 0, err
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, "/v1/messages/count_tokens", body, false)
	if err != nil {
		return 0, err
	}
	b, err := adapter.Do(c.Conn(), hreq)
	if err != nil {
		return 0, err
	}
	var out struct {
		InputTokens *int `json:"input_tokens"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.InputTokens == nil || *out.InputTokens < 0 {
		msg := "no input_tokens"
		if err != nil {
			msg = err.Error()
		}
		return 0, upstreamhttp.Unreadable(c.provider(), &llm.Error{Status: http.StatusBadGateway,
			Message: "malformed count_tokens answer: " + msg})
	}
	return *out.InputTokens, nil
}

// Models lists the upstream's model ids (GET /v1/models, following
// pagination).
func (c *Client) Models(ctx context.Context) ([]string, error) {
	var ids []string
	after := ""
	for page := 0; page < 100; page++ {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after_id", after)
		}
		req, err := c.newRequest(ctx, http.MethodGet, "/v1/models?"+q.Encode(), nil, false)
		if err != nil {
			return nil, err
		}
		b, err := adapter.Do(c.Conn(), req)
		if err != nil {
			return nil, err
		}
		var list ModelList
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, upstreamhttp.Unreadable(c.provider(), &llm.Error{Status: http.StatusBadGateway,
				Message: "malformed model list: " + err.Error()})
		}
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		if !list.HasMore || list.LastID == "" || list.LastID == after {
			break
		}
		after = list.LastID
	}
	return ids, nil
}

// OutputBound is the max_tokens Client sends for r: the request's own,
// else Options.DefaultMaxTokens (DefaultMaxTokens when 0), raised by the
// thinking budget when that is not below it. Anthropic bills thinking as
// output within max_tokens, so nothing is billed beyond it.
func (c *Client) OutputBound(r *llm.Request) llm.OutputBound {
	b := llm.OutputBound{Tokens: c.Options.DefaultMaxTokens, Default: true}
	if b.Tokens <= 0 {
		b.Tokens = DefaultMaxTokens
	}
	if r.MaxTokens != nil && *r.MaxTokens > 0 {
		b.Tokens, b.Default = *r.MaxTokens, false
	}
	if reasoningEnabled(r.Reasoning) {
		if budget := thinkingBudget(r); budget >= b.Tokens {
			b.Tokens += budget
		}
	}
	return b
}
