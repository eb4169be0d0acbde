// Package upstreamhttp is the HTTP exchange the outbound adapters of the wire
// formats share: sending a built request and turning transport failures
// and non-2xx answers into errors, never following redirects, and
// (Bounded) the limits every upstream answer is read under: body size,
// stream line length, idle time. Building the request (URL, headers,
// credentials) stays with each format; formats/adapter is the flow of a
// whole call over this exchange.
package upstreamhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"

	"github.com/omniedge/omni/internal/route/llm"
)

// MaxErrorBody bounds what is read of a non-2xx answer's body.
const MaxErrorBody = 1 << 20

// DecodeError turns a non-2xx answer into an error; each format has one.
type DecodeError func(status int, header http.Header, body []byte) *llm.Error

// Send sends req with hc (http.DefaultClient when nil) and returns a 2xx
// answer. Redirects are never followed, whatever hc says: the request
// carries the provider's key. A client from Bounded is used as it is;
// any other is copied with redirects refused, per call. Otherwise it
// fails with:
//
//   - the context's error when the request's context ended;
//   - for any other transport error, an *llm.Error of status 0 and type
//     server (Unreachable: no address, URL or host name);
//   - for a 3xx answer, an *llm.Error of status 502 saying so
//     (Answered);
//   - for another non-2xx answer, decode of its status, header and at
//     most MaxErrorBody bytes of its body, which is closed (Answered).
//
// The *llm.Error names provider, in its Provider and its message.
func Send(hc *http.Client, req *http.Request, provider string, decode DecodeError) (*http.Response, error) {
	resp, err := noRedirect(hc).Do(req)
	if err != nil {
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		return nil, Unreachable(provider, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		resp.Body.Close()
		return nil, Answered(provider, resp.StatusCode, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer,
			Message: "a redirect, which the gateway does not follow: check the provider's base URL"})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
		return nil, Answered(provider, resp.StatusCode, decode(resp.StatusCode, resp.Header, b))
	}
	return resp, nil
}

// NewRequest builds an upstream request; a URL that does not parse is
// an Unreachable error naming provider, not the URL.
func NewRequest(ctx context.Context, method, url string, body io.Reader, provider string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, Unreachable(provider, err)
	}
	return req, nil
}

// noRedirect returns hc when it already returns redirects as they are
// (Bounded clients: the gateway's, on every call), else a copy that does.
func noRedirect(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	if hc.CheckRedirect != nil && reflect.ValueOf(hc.CheckRedirect).Pointer() == reflect.ValueOf(refuseRedirect).Pointer() {
		return hc
	}
	c := *hc
	c.CheckRedirect = refuseRedirect
	return &c
}

// ReadBody reads the whole body of a 2xx answer that hc (nil:
// http.DefaultClient) gave, and closes it. The body is bounded where
// every answer is (Limits.caps): by the client's own limits when it came
// from Bounded, else by the default limits here. A failed read, a cut
// included, is an *llm.Error of status 0 and type server naming
// provider (Unreadable), whose message says which limit cut the answer
// or what kind of failure it was — never an address or URL.
func ReadBody(hc *http.Client, resp *http.Response, provider string) ([]byte, error) {
	defer resp.Body.Close()
	var rd io.Reader = resp.Body
	var limit int64
	if !bounded(hc) {
		ctx := context.Background()
		if resp.Request != nil {
			ctx = resp.Request.Context()
		}
		limit, _ = Limits{}.withDefaults().caps(ctx, "")
		rd = io.LimitReader(resp.Body, limit+1)
	}
	b, err := io.ReadAll(rd)
	if err == nil && limit > 0 && int64(len(b)) > limit {
		err = &limitError{fmt.Sprintf("the upstream answer is larger than %d bytes", limit)}
	}
	if err != nil {
		return nil, Unreadable(provider, &llm.Error{Status: 0, Message: DescribeRead(err)})
	}
	return b, nil
}

// bounded reports a client from Bounded.
func bounded(hc *http.Client) bool {
	if hc == nil {
		return false
	}
	_, ok := hc.Transport.(*transport)
	return ok
}

// DescribeRead says why reading an answer failed: the limit that cut it
// (Bounded), the context's end, or the kind of failure (Describe) —
// without addresses.
func DescribeRead(err error) string {
	var le *limitError
	switch {
	case errors.As(err, &le):
		return le.msg
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err.Error()
	}
	return Describe(err)
}
