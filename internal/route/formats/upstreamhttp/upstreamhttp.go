// Package upstreamhttp is the HTTP exchange the outbound adapters of the wire
// formats share: sending a built request and turning transport failures
// and non-2xx answers into errors, never following redirects, and
// (Bounded) the limits every upstream answer is read under: body size,
// stream line length, idle time. Building the request (URL, headers,
// credentials) stays with each format.
package upstreamhttp

import (
	"fmt"
	"io"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// MaxErrorBody bounds what is read of a non-2xx answer's body.
const MaxErrorBody = 1 << 20

// DecodeError turns a non-2xx answer into an error; each format has one.
type DecodeError func(status int, header http.Header, body []byte) *llm.Error

// Send sends req with hc (http.DefaultClient when nil) and returns a 2xx
// answer. Redirects are never followed, whatever hc says: the request
// carries the provider's key. Otherwise it fails with:
//
//   - the context's error when the request's context ended, wrapped as
//     "prefix: err" unless prefix is empty;
//   - for any other transport error, an *llm.Error of status 0 and type
//     server whose message is unreachable followed by what kind of
//     failure it was (Describe: no address, URL or host name);
//   - for a 3xx answer, an *llm.Error of status 502 saying so;
//   - for another non-2xx answer, decode of its status, header and at
//     most MaxErrorBody bytes of its body, which is closed.
//
// The *llm.Error carries provider.
func Send(hc *http.Client, req *http.Request, provider, prefix, unreachable string, decode DecodeError) (*http.Response, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = refuseRedirect
	resp, err := c.Do(req)
	if err != nil {
		if err := req.Context().Err(); err != nil {
			if prefix == "" {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		return nil, &llm.Error{Status: 0, Type: llm.ErrServer, Provider: provider, Message: unreachable + Describe(err)}
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		resp.Body.Close()
		return nil, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: provider,
			Message: fmt.Sprintf("the upstream answered %d, a redirect, which the gateway does not follow: check the provider's base URL", resp.StatusCode)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
		e := decode(resp.StatusCode, resp.Header, b)
		e.Provider = provider
		return nil, e
	}
	return resp, nil
}
