// Package ws is chat streaming over a WebSocket (GET /v1/ws): the
// protocol (a client's requests and cancels, the server's chunk, done,
// error and cancelled events, tagged with the client's request ids), the
// sockets and their caps (message size, requests in flight, sockets per
// key and in all, idle, write stalls, keepalive), the origin check of the
// handshake and its description (?handshake=1). Each request takes the
// gateway's chat path through the Gateway the transport (route/api)
// hands it; the protocol is in docs/route.md ("WebSocket streaming").
package ws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// Gateway is what the sockets use of the gateway's transport.
type Gateway interface {
	// Keyed wraps h in the gateway key check of the /v1 routes; h's
	// errors, and refusals, are written in OpenAI's error shape.
	Keyed(h func(http.ResponseWriter, *http.Request) error) http.Handler
	// WriteError writes e in OpenAI's error shape.
	WriteError(w http.ResponseWriter, e *llm.Error)
	// KeyID is the id of the gateway key the request of ctx was
	// authenticated with, "" when it had none.
	KeyID(ctx context.Context) string
	// Describe is what the engine is told of the requests of a socket
	// opened by r (whose context, with the key, is ctx): key, endpoint,
	// session, the cache headers.
	Describe(ctx context.Context, r *http.Request) pipeline.Origin
	// Chat runs a chat request through the engine, as
	// POST /v1/chat/completions does.
	Chat(ctx context.Context, o *pipeline.Origin, req *llm.Request) (pipeline.Answer, error)
	// Error is the error the client of r is sent for err (an unexpected
	// one is logged and sent as a 500).
	Error(r *http.Request, err error) *llm.Error
}

const (
	// wsSubprotocol is the protocol the gateway speaks on the socket; a
	// client that offers subprotocols must offer it.
	wsSubprotocol = "omniroute.v1"
	// wsKeyPrefix marks the gateway key offered as a subprotocol
	// ("omniroute.key.<key>"), for browsers, which cannot set headers
	// on a WebSocket. It is never echoed back.
	wsKeyPrefix = "omniroute.key."
	// maxWSID bounds a request id.
	maxWSID = 128
)

// Limits caps what one client may hold on the sockets.
type Limits struct {
	MaxMessage   int64         // bytes of one client message (larger: closed with 1009)
	MaxInFlight  int           // requests running at once on one socket
	PerKey       int           // sockets open per gateway key (keyless clients share one count)
	Total        int           // sockets open in all
	Idle         time.Duration // closed after this long with nothing in flight and no message
	WriteTimeout time.Duration // a message not written within it closes the socket (a client that does not read)
	PingInterval time.Duration // the server pings this often
	PongTimeout  time.Duration // and closes the socket without a pong within this
}

// DefaultLimits are the caps of GET /v1/ws under a request body cap of
// maxBody.
func DefaultLimits(maxBody int64) Limits {
	return Limits{MaxMessage: min(maxBody, 8<<20), MaxInFlight: 8, PerKey: 16, Total: 1024,
		Idle: 5 * time.Minute, WriteTimeout: 10 * time.Second, PingInterval: 30 * time.Second, PongTimeout: 15 * time.Second}
}

// wsHub serves the sockets of one server: it counts them against the
// caps and drains them when the HTTP server shuts down.
type wsHub struct {
	g     Gateway
	lim   Limits
	clock clock.Clock
	log   *slog.Logger
	inner http.Handler

	mu       sync.Mutex
	total    int
	perKey   map[string]int // at most lim.Total entries
	conns    map[*wsConn]struct{}
	servers  map[*http.Server]struct{}
	draining bool
}

// New serves GET /v1/ws (and ?handshake=1) over g under lim.
func New(g Gateway, lim Limits, clk clock.Clock, log *slog.Logger) http.Handler {
	h := &wsHub{g: g, lim: lim, clock: clk, log: log, perKey: map[string]int{}, conns: map[*wsConn]struct{}{}, servers: map[*http.Server]struct{}{}}
	h.inner = g.Keyed(h.serve)
	return h
}

// keyParams are query parameters a key could be put in; the socket
// refuses them rather than let keys settle in URLs (access logs,
// proxies, browser histories).
var keyParams = []string{"key", "api_key", "apikey", "token", "access_token"}

func (h *wsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, p := range keyParams {
		if q.Has(p) {
			h.g.WriteError(w, &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "key_in_url",
				Message: "a gateway key in the URL ends up in logs: send it as Authorization: Bearer <key> or as the subprotocol " + wsKeyPrefix + "<key>"})
			return
		}
	}
	if key, _ := offeredProtocols(r); key != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+key)
	}
	h.inner.ServeHTTP(w, r)
}

// offeredProtocols splits the client's subprotocols into the gateway key
// it offered (if any) and the others.
func offeredProtocols(r *http.Request) (key string, others []string) {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			switch {
			case p == "":
			case strings.HasPrefix(p, wsKeyPrefix):
				key = p[len(wsKeyPrefix):]
			case len(others) < 16:
				others = append(others, p)
			}
		}
	}
	return key, others
}

// foreignOrigin reports a browser request from a page of another site
// (or an opaque origin, "null").
func foreignOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	scheme, host, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/?#@") {
		return true
	}
	return !strings.EqualFold(host, r.Host)
}

// errCrossOrigin refuses a keyless upgrade from another site's page.
var errCrossOrigin = &llm.Error{Status: http.StatusForbidden, Type: llm.ErrPermission, Code: "cross_origin",
	Message: "a WebSocket from another site's page needs a gateway key (subprotocol " + wsKeyPrefix + "<key>)"}

func (h *wsHub) serve(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Has("handshake") {
		return h.handshake(w, r)
	}
	keyID := h.g.KeyID(r.Context())
	if foreignOrigin(r) && keyID == "" {
		return errCrossOrigin
	}
	if p := handshakeProblems(r); len(p) > 0 {
		status := http.StatusBadRequest
		if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
			status = http.StatusUpgradeRequired
			w.Header().Set("Upgrade", "websocket")
		}
		return &llm.Error{Status: status, Type: llm.ErrInvalidRequest, Code: "bad_handshake",
			Message: "not a valid WebSocket handshake: " + strings.Join(p, "; ") + " (GET /v1/ws?handshake=1 describes the protocol)"}
	}
	release, err := h.acquire(keyID)
	if err != nil {
		return err
	}
	defer release()
	h.watchShutdown(r)
	// The origin is checked above: a foreign one only with a key.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wsSubprotocol}, InsecureSkipVerify: true})
	if err != nil {
		h.log.Debug("websocket accept failed", "err", err)
		return nil // Accept answered
	}
	// The handshake's context ends when this handler returns; the
	// socket's keeps its values (key id, session, request id).
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	wc := &wsConn{h: h, c: c, r: r, ctx: ctx, cancel: cancel, reqs: map[string]context.CancelFunc{}}
	wc.touch()
	if !h.add(wc) {
		cancel()
		c.Close(websocket.StatusGoingAway, "server shutting down")
		return nil
	}
	defer h.remove(wc)
	wc.serve()
	return nil
}

// acquire counts a socket of key against the caps.
func (h *wsHub) acquire(key string) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.draining:
		return nil, &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Code: "shutting_down", Message: "the gateway is shutting down"}
	case h.perKey[key] >= h.lim.PerKey:
		return nil, &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "too_many_sockets",
			Message: fmt.Sprintf("this key already has %d sockets open; close one or run several requests on one socket", h.lim.PerKey)}
	case h.total >= h.lim.Total:
		return nil, &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Code: "too_many_sockets",
			Message: fmt.Sprintf("the gateway has %d sockets open", h.lim.Total)}
	}
	h.total++
	h.perKey[key]++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.total--
		if h.perKey[key]--; h.perKey[key] <= 0 {
			delete(h.perKey, key)
		}
	}, nil
}

// watchShutdown has the HTTP server serving r drain the sockets when it
// shuts down: net/http does not close connections it handed over.
func (h *wsHub) watchShutdown(r *http.Request) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, seen := h.servers[srv]; seen || len(h.servers) >= 16 {
		return
	}
	h.servers[srv] = struct{}{}
	srv.RegisterOnShutdown(h.shutdown)
}

// shutdown refuses new sockets and requests, and closes each socket once
// its requests in flight have ended.
func (h *wsHub) shutdown() {
	h.mu.Lock()
	h.draining = true
	conns := make([]*wsConn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
}

func (h *wsHub) add(c *wsConn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return false
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *wsHub) remove(c *wsConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, c)
}

// wsConn is one client's socket.
type wsConn struct {
	h      *wsHub
	c      *websocket.Conn
	r      *http.Request // the handshake: key, session, cache headers
	ctx    context.Context
	cancel context.CancelFunc

	wg         sync.WaitGroup // requests and the keepalive loops
	lastActive atomic.Int64   // unix nanoseconds of the last message or request end

	mu       sync.Mutex
	reqs     map[string]context.CancelFunc // requests in flight, at most lim.MaxInFlight
	draining bool
}

// wsIn is a client message.
type wsIn struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Body json.RawMessage `json:"body"`
}

// wsOut is a server message.
type wsOut struct {
	Type     string          `json:"type"`
	ID       string          `json:"id,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Usage    json.RawMessage `json:"usage,omitempty"`
	Model    string          `json:"model,omitempty"`
	Cache    string          `json:"cache,omitempty"`
	Status   int             `json:"status,omitempty"`
	Error    json.RawMessage `json:"error,omitempty"`
	Attempts []llm.Attempt   `json:"attempts,omitempty"`
}

func (wc *wsConn) touch() { wc.lastActive.Store(time.Now().UnixNano()) }

// serve reads the client's messages until the socket closes, then ends
// the requests still running (their upstream calls are cancelled and
// recorded as cut short, as a chat client leaving is).
func (wc *wsConn) serve() {
	lim := wc.h.lim
	wc.c.SetReadLimit(lim.MaxMessage)
	wc.wg.Add(2)
	go wc.keepalive()
	go wc.idle()
	for {
		typ, data, err := wc.c.Read(wc.ctx)
		if err != nil {
			break
		}
		wc.touch()
		if typ != websocket.MessageText {
			wc.sendError("", invalidMsg("messages are JSON text, not binary"))
			continue
		}
		wc.handle(data)
	}
	wc.cancel()
	wc.wg.Wait()
	wc.c.CloseNow()
}

// keepalive pings the client; a client that does not answer in time is
// disconnected.
func (wc *wsConn) keepalive() {
	defer wc.wg.Done()
	t := time.NewTicker(wc.h.lim.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-wc.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(wc.ctx, wc.h.lim.PongTimeout)
		err := wc.c.Ping(ctx)
		cancel()
		if err != nil {
			wc.c.CloseNow()
			return
		}
	}
}

// idle closes a socket that had nothing in flight and sent nothing for
// lim.Idle.
func (wc *wsConn) idle() {
	defer wc.wg.Done()
	t := time.NewTimer(wc.h.lim.Idle)
	defer t.Stop()
	for {
		select {
		case <-wc.ctx.Done():
			return
		case <-t.C:
		}
		wc.mu.Lock()
		busy := len(wc.reqs) > 0
		wc.mu.Unlock()
		quiet := time.Since(time.Unix(0, wc.lastActive.Load()))
		if !busy && quiet >= wc.h.lim.Idle {
			wc.c.Close(websocket.StatusGoingAway, "idle timeout")
			return
		}
		t.Reset(max(wc.h.lim.Idle-quiet, wc.h.lim.Idle/8, time.Millisecond))
	}
}

// drain refuses further requests and closes the socket once none is in
// flight.
func (wc *wsConn) drain() {
	wc.mu.Lock()
	wc.draining = true
	n := len(wc.reqs)
	wc.mu.Unlock()
	if n == 0 {
		go wc.c.Close(websocket.StatusGoingAway, "server shutting down")
	}
}

func invalidMsg(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: "invalid_message", Message: fmt.Sprintf(format, args...)}
}

// validID reports a request id of 1 to maxWSID printable ASCII bytes.
func validID(id string) bool {
	if id == "" || len(id) > maxWSID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// handle acts on one client message; a message it cannot act on gets an
// error event and leaves the socket open.
func (wc *wsConn) handle(data []byte) {
	var m wsIn
	if err := json.Unmarshal(data, &m); err != nil {
		wc.sendError("", invalidMsg("a message is a JSON object {\"type\",\"id\",…}: %v", err))
		return
	}
	id := m.ID
	if !validID(id) {
		id = ""
	}
	switch m.Type {
	case "request", "cancel":
		if id == "" {
			wc.sendError("", invalidMsg("id: required, 1 to %d printable ASCII characters", maxWSID))
			return
		}
	default:
		wc.sendError(id, invalidMsg("type: %q is not a message type (request, cancel)", m.Type))
		return
	}
	if m.Type == "cancel" {
		wc.mu.Lock()
		cancel := wc.reqs[id]
		wc.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return
	}
	if len(m.Body) == 0 || string(m.Body) == "null" {
		wc.sendError(id, invalidMsg("body: required, a chat completion request"))
		return
	}
	req, err := openai.DecodeRequest(m.Body)
	if err != nil {
		wc.sendError(id, wc.h.g.Error(wc.r, err))
		return
	}
	req.Stream = true
	wc.mu.Lock()
	var refuse *llm.Error
	switch {
	case wc.draining:
		refuse = &llm.Error{Status: http.StatusServiceUnavailable, Type: llm.ErrOverloaded, Code: "shutting_down", Message: "the gateway is shutting down"}
	case wc.reqs[id] != nil:
		refuse = &llm.Error{Status: http.StatusConflict, Type: llm.ErrInvalidRequest, Code: "duplicate_id", Message: "a request with id " + id + " is in flight"}
	case len(wc.reqs) >= wc.h.lim.MaxInFlight:
		refuse = &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Code: "too_many_requests",
			Message: fmt.Sprintf("%d requests are in flight on this socket; wait for one to end", wc.h.lim.MaxInFlight)}
	}
	if refuse != nil {
		wc.mu.Unlock()
		wc.sendError(id, refuse)
		return
	}
	ctx, cancel := context.WithCancel(wc.ctx)
	wc.reqs[id] = cancel
	wc.wg.Add(1)
	wc.mu.Unlock()
	go func() {
		defer wc.wg.Done()
		last := wc.run(ctx, id, req)
		closing := wc.finish(id, cancel)
		if last != nil && wc.ctx.Err() == nil {
			wc.send(last)
		}
		if closing {
			wc.c.Close(websocket.StatusGoingAway, "server shutting down")
		}
	}()
}

// finish forgets a request that ended, before its last event is sent: a
// client may send the next request as soon as it hears the last one
// ended. It reports whether the socket is to close (draining and idle).
func (wc *wsConn) finish(id string, cancel context.CancelFunc) bool {
	cancel()
	wc.touch()
	wc.mu.Lock()
	defer wc.mu.Unlock()
	delete(wc.reqs, id)
	return wc.draining && len(wc.reqs) == 0
}

// run streams one request's answer as chunk events and returns its last
// event (done, error or cancelled), nil when the socket is gone. A
// client's cancel ends ctx: the upstream call is cancelled and the
// stream's outcome recorded as cut short.
func (wc *wsConn) run(ctx context.Context, id string, req *llm.Request) *wsOut {
	cancelled := &wsOut{Type: "cancelled", ID: id}
	o := wc.h.g.Describe(wc.ctx, wc.r)
	a, err := wc.h.g.Chat(ctx, &o, req)
	if err != nil {
		if ctx.Err() != nil {
			return cancelled
		}
		return errorOut(id, wc.h.g.Error(wc.r, err))
	}
	stream := a.Stream
	if stream == nil {
		stream = &llm.SliceStream{Events: llm.Events(a.Response)}
	}
	open := true
	defer func() {
		if open {
			stream.Close()
		}
	}()
	sink := &wsSink{wc: wc, id: id, includeUsage: req.IncludeUsage}
	enc := openai.NewStreamEncoder(sink, true, wc.h.clock.Now().Unix())
	for {
		ev, err := stream.Next()
		if ctx.Err() != nil {
			return cancelled
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if sink.done {
			if err != nil {
				break
			}
			continue // read to the end, as POST /v1/chat/completions does
		}
		if err != nil || ev.Type == llm.EventError {
			le := ev.Err
			if err != nil && !errors.As(err, &le) {
				le = &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream failed", InStream: true}
			}
			return errorOut(id, le)
		}
		if err := enc.Encode(ev); err != nil {
			return nil // the socket is gone
		}
	}
	// Closing the stream settles its outcome (usage, spend, the cache)
	// before the client hears the request is done.
	open = false
	stream.Close()
	if !sink.done {
		return errorOut(id, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "upstream stream ended unexpectedly", InStream: true})
	}
	return &wsOut{Type: "done", ID: id, Usage: sink.usage, Model: a.Model, Cache: a.Cache}
}

// errorOut is e as an error event in OpenAI's error shape, with the HTTP
// status the same request would have had over HTTP.
func errorOut(id string, e *llm.Error) *wsOut {
	status, body := openai.EncodeError(e)
	var wrapped struct {
		Error json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(body, &wrapped)
	return &wsOut{Type: "error", ID: id, Status: status, Error: wrapped.Error, Attempts: e.Attempts}
}

// sendError sends e as an error event.
func (wc *wsConn) sendError(id string, e *llm.Error) { wc.send(errorOut(id, e)) }

// send writes one message; one that cannot be written within the write
// timeout closes the socket (coder/websocket closes it when the
// context ends mid-write), so a client that does not read holds no more
// than what the socket buffers.
func (wc *wsConn) send(m *wsOut) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(wc.ctx, wc.h.lim.WriteTimeout)
	defer cancel()
	return wc.c.Write(ctx, websocket.MessageText, b)
}

// wsSink receives the OpenAI stream encoder's SSE lines ("data: …\n\n",
// one per write) and sends the chunks as events; it keeps the usage
// chunk's usage for the done event (and sends the chunk only when the
// client asked for it) and notes the final [DONE].
type wsSink struct {
	wc           *wsConn
	id           string
	includeUsage bool // the client asked for the usage chunk (stream_options.include_usage)
	usage        json.RawMessage
	done         bool
}

var emptyChoices = []byte(`"choices":[]`)

func (k *wsSink) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(bytes.TrimPrefix(p, []byte("data: ")))
	if string(line) == "[DONE]" {
		k.done = true
		return len(p), nil
	}
	if bytes.Contains(line, emptyChoices) {
		var u struct {
			Usage json.RawMessage `json:"usage"`
		}
		if json.Unmarshal(line, &u) == nil && len(u.Usage) > 0 && string(u.Usage) != "null" {
			k.usage = u.Usage
			if !k.includeUsage {
				return len(p), nil
			}
		}
	}
	return len(p), k.wc.send(&wsOut{Type: "chunk", ID: k.id, Data: line})
}
