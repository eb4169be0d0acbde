package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// Dispatcher serves requests through the gateway's handler from inside
// the process as a gateway key (feature.Dispatcher): the work the gateway
// does for a key (a batch's lines) passes the key check, policy, limits,
// budgets, usage records and fallback of the key's own requests.
//
// The key is never taken from the network: a dispatched request carries
// in its context the key id and a random per-process credential, which
// it also presents as its bearer key; the key checker installed by
// NewDispatcher accepts that credential only together with the context
// mark, which only Dispatch sets. A client sending the credential gets
// an invalid-key 401 like any unknown key. A keyless batch (made by a
// local client without a key) is dispatched as a local client, so it is
// served only while the configuration still serves those.
type Dispatcher struct {
	s       *Server
	handler func() http.Handler
	secret  []byte
	// Requests being dispatched, which Interactive does not count.
	dispatched atomic.Int64
}

var _ feature.Dispatcher = (*Dispatcher)(nil)

// NewDispatcher returns the dispatcher serving through the handler that
// handler returns (the gateway's whole handler, so that every module's
// endpoint is reachable; it is asked at each Dispatch, so it may be
// assembled after the dispatcher). It must be called before s serves.
func (s *Server) NewDispatcher(handler func() http.Handler) *Dispatcher {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	d := &Dispatcher{s: s, handler: handler, secret: []byte("omni-dispatch-" + hex.EncodeToString(b))}
	s.cfg.Keys = dispatchKeys{next: s.cfg.Keys, secret: d.secret}
	return d
}

type dispatchMarkKey struct{}

// dispatchMark is what Dispatch puts on a request's context.
type dispatchMark struct{ keyID string }

// dispatchKeys accepts the dispatcher's credential on requests carrying
// its context mark and asks next about every other key.
type dispatchKeys struct {
	next   KeyChecker
	secret []byte
}

func (k dispatchKeys) Lookup(ctx context.Context, raw string) (string, bool) {
	if m, ok := ctx.Value(dispatchMarkKey{}).(*dispatchMark); ok && m.keyID != "" &&
		subtle.ConstantTimeCompare([]byte(raw), k.secret) == 1 {
		return m.keyID, true
	}
	if k.next == nil {
		return "", false
	}
	return k.next.Lookup(ctx, raw)
}

// Dispatch implements feature.Dispatcher.
func (d *Dispatcher) Dispatch(ctx context.Context, keyID, method, path string, body []byte, maxAnswer int) (feature.Dispatched, error) {
	d.dispatched.Add(1)
	defer d.dispatched.Add(-1)
	ctx = context.WithValue(ctx, dispatchMarkKey{}, &dispatchMark{keyID: keyID})
	r, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, bytes.NewReader(body))
	if err != nil {
		return feature.Dispatched{}, err
	}
	r.RemoteAddr = "127.0.0.1:0"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if keyID != "" {
		r.Header.Set("Authorization", "Bearer "+string(d.secret))
	}
	w := &answerWriter{header: http.Header{}, max: maxAnswer}
	d.handler().ServeHTTP(w, r)
	if err := ctx.Err(); err != nil {
		return feature.Dispatched{}, err
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return feature.Dispatched{Status: w.status, RequestID: newDispatchID(), Body: w.body.Bytes(), Truncated: w.truncated}, nil
}

// Interactive implements feature.Dispatcher: the requests in flight at
// the gateway transport that are not dispatched.
func (d *Dispatcher) Interactive() int {
	return max(0, int(d.s.inflight.Load()-d.dispatched.Load()))
}

// Background implements feature.Dispatcher: h's requests count as
// dispatched ones.
func (d *Dispatcher) Background(h http.Handler) http.Handler {
	return httpx.WithAuth(AuthGatewayKey, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.dispatched.Add(1)
		defer d.dispatched.Add(-1)
		h.ServeHTTP(w, r)
	}))
}

func newDispatchID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "req_" + hex.EncodeToString(b)
}

// answerWriter keeps a dispatched request's answer, at most max bytes of
// its body.
type answerWriter struct {
	header    http.Header
	status    int
	body      bytes.Buffer
	max       int
	truncated bool
}

func (w *answerWriter) Header() http.Header { return w.header }

func (w *answerWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *answerWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := w.max - w.body.Len(); len(b) > room {
		w.body.Write(b[:max(0, room)])
		w.truncated = true
		return len(b), nil
	}
	return w.body.Write(b)
}
