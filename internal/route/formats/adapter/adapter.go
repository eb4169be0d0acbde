// Package adapter is the flow every provider adapter of the wire formats
// shares. A format's Client plugs its own parts into Format (the request
// it builds from a canonical one, the decoders of whole and streamed
// answers) and Chat and Stream do the rest the same way for every
// upstream: mark a stream request (upstreamhttp.Streamed), send through
// upstreamhttp.Send (no redirects, non-2xx answers decoded and
// labelled), read a whole answer bounded (upstreamhttp.ReadBody), and
// hand a streamed answer to the format's decoder, or replay a whole JSON
// answer to a stream request as a stream when the format accepts one
// (Replayer). NewRequest, SetHeaders, SetKey and Do are the pieces the
// formats build their requests and other calls (embeddings, model
// lists, token counts) from. It imports no format.
package adapter

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// Conn is what the flow needs of one upstream connection.
type Conn struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Provider names the upstream in errors.
	Provider string
	// DecodeError is the format's decoder of non-2xx answers.
	DecodeError upstreamhttp.DecodeError
}

// Format is a wire format's part of an outbound adapter: what differs
// between upstream APIs. Each format's Client implements it.
type Format interface {
	// Conn names the connection.
	Conn() Conn
	// NewRequest encodes r for model, streamed or not (r.Stream is
	// whatever the caller set; the format sets its own), and builds the
	// upstream request under ctx, which Stream has already marked
	// upstreamhttp.Streamed.
	NewRequest(ctx context.Context, r *llm.Request, model string, stream bool) (*http.Request, error)
	// DecodeAnswer decodes the whole 2xx answer to r. Its errors are
	// labelled the way upstreamhttp names them (an error object the
	// upstream answered with: Answered; an answer that could not be read:
	// Unreadable).
	DecodeAnswer(r *llm.Request, body []byte) (*llm.Response, error)
	// DecodeStream returns the events of the streamed answer to r read
	// from body, which the stream's Close closes.
	DecodeStream(r *llm.Request, body io.ReadCloser) llm.Stream
}

// Replayer is a Format whose upstream may answer a stream request with
// one whole JSON answer (Content-Type application/json): Replay turns
// that answer to r into a stream, its errors labelled as DecodeAnswer's.
type Replayer interface {
	Replay(r *llm.Request, body []byte) (llm.Stream, error)
}

// Chat sends r to f's upstream non-streamed as model and decodes the
// answer. Failures are f's encoding errors, upstreamhttp's (Send,
// ReadBody) and f's decoding errors.
func Chat(ctx context.Context, f Format, r *llm.Request, model string) (*llm.Response, error) {
	req, err := f.NewRequest(ctx, r, model, false)
	if err != nil {
		return nil, err
	}
	b, err := Do(f.Conn(), req)
	if err != nil {
		return nil, err
	}
	return f.DecodeAnswer(r, b)
}

// Stream sends r to f's upstream streamed as model. Errors before the
// stream starts are returned; later ones (an error event, a cut
// connection) arrive as the stream's EventError, from f's decoder. A
// whole JSON answer is replayed as a stream when f is a Replayer.
func Stream(ctx context.Context, f Format, r *llm.Request, model string) (llm.Stream, error) {
	req, err := f.NewRequest(upstreamhttp.Streamed(ctx), r, model, true)
	if err != nil {
		return nil, err
	}
	c := f.Conn()
	resp, err := upstreamhttp.Send(c.HTTP, req, c.Provider, c.DecodeError)
	if err != nil {
		return nil, err
	}
	if rp, ok := f.(Replayer); ok {
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
			b, err := upstreamhttp.ReadBody(c.HTTP, resp, c.Provider)
			if err != nil {
				return nil, err
			}
			return rp.Replay(r, b)
		}
	}
	return f.DecodeStream(r, resp.Body), nil
}

// Replay is the stream of a whole answer (the usual Replayer.Replay: a
// format's answer decoded as for Chat, its events in order).
func Replay(full *llm.Response, err error) (llm.Stream, error) {
	if err != nil {
		return nil, err
	}
	return &llm.SliceStream{Events: llm.Events(full)}, nil
}

// Do sends req on c and reads the whole 2xx answer (upstreamhttp.Send,
// then upstreamhttp.ReadBody).
func Do(c Conn, req *http.Request) ([]byte, error) {
	resp, err := upstreamhttp.Send(c.HTTP, req, c.Provider, c.DecodeError)
	if err != nil {
		return nil, err
	}
	return upstreamhttp.ReadBody(c.HTTP, resp, c.Provider)
}

// NewRequest builds an upstream request of body, JSON (no body when
// nil): Content-Type application/json with a body, and Accept when
// accept is not empty. A URL that does not parse is an Unreachable error
// naming provider (upstreamhttp.NewRequest). The format adds its own
// headers, the connection's (SetHeaders) and the key (SetKey).
func NewRequest(ctx context.Context, provider, method, url string, body []byte, accept string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := upstreamhttp.NewRequest(ctx, method, url, rd, provider)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return req, nil
}

// SetHeaders sets a connection's extra headers on h, replacing what is
// there.
func SetHeaders(h http.Header, extra map[string]string) {
	for k, v := range extra {
		h.Set(k, v)
	}
}

// SetKey sends a connection's key: name is removed, then set to
// scheme+key when key is not empty. Called after SetHeaders, the
// connection's headers cannot replace the key.
func SetKey(h http.Header, name, scheme, key string) {
	h.Del(name)
	if key != "" {
		h.Set(name, scheme+key)
	}
}

// Accept is the Accept header of a JSON API that streams server-sent
// events.
func Accept(stream bool) string {
	if stream {
		return "text/event-stream"
	}
	return "application/json"
}
