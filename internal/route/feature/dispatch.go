package feature

import (
	"context"
	"net/http"
)

// Dispatcher serves requests through the gateway's own endpoints from
// inside the process, as a given gateway key, so that work the gateway
// does on a key's behalf (a batch's lines) passes the same gates as the
// key's own requests: key policy, limits, budgets, usage records and
// fallback. route/api implements it; a module doing such work uses it.
// The key travels in the request's context, which no network client can
// set.
type Dispatcher interface {
	// Dispatch serves a method request of path with the JSON body as
	// the gateway key keyID ("" for a keyless local client) and returns
	// the answer, whose body is cut at maxAnswer bytes (Truncated set).
	// The error is only for a request that could not be served at all
	// (ctx ended); an endpoint's failures are answers with their status.
	Dispatch(ctx context.Context, keyID, method, path string, body []byte, maxAnswer int) (Dispatched, error)
	// Interactive is how many requests from clients the gateway is
	// handling now, dispatched ones not counted: what background work
	// yields to.
	Interactive() int
	// Background returns h with its requests not counted by
	// Interactive: a background feature's own cheap endpoints (a
	// client polling its batch) do not make it yield.
	Background(h http.Handler) http.Handler
}

// Dispatched is the answer of a dispatched request.
type Dispatched struct {
	Status    int
	RequestID string // the gateway's id of the request
	Body      []byte
	Truncated bool // the answer was longer than maxAnswer
}
