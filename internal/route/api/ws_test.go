package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/openai/openai-go/v3"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/api"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// wsEvent is a server message of GET /v1/ws.
type wsEvent struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Data   json.RawMessage `json:"data"`
	Usage  json.RawMessage `json:"usage"`
	Model  string          `json:"model"`
	Cache  string          `json:"cache"`
	Status int             `json:"status"`
	Error  *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	} `json:"error"`
	Attempts []json.RawMessage `json:"attempts"`
}

// content is the delta text of a chunk event.
func (e wsEvent) content(t *testing.T) string {
	t.Helper()
	var c struct {
		Object  string `json:"object"`
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(e.Data, &c); err != nil || c.Object != "chat.completion.chunk" {
		t.Fatalf("chunk data %s: %v", e.Data, err)
	}
	if len(c.Choices) == 0 {
		return ""
	}
	return c.Choices[0].Delta.Content
}

// wsURL is the socket's URL on a gateway served at base.
func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/v1/ws" }

// keyed are dial options carrying the gateway key as a header.
func keyed() *websocket.DialOptions {
	return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + gatewayKey}}}
}

func wsDial(t testing.TB, base string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(base), opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// wsRefused dials and expects the handshake to be refused with status;
// it returns the error body, in OpenAI's shape.
func wsRefused(t *testing.T, base string, opts *websocket.DialOptions, status int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(base), opts)
	if err == nil {
		c.CloseNow()
		t.Fatalf("upgrade accepted, want %d", status)
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("refusal %v %+v, want %d", err, resp, status)
	}
	var body struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &body) != nil || body.Error.Message == "" || body.Error.Type == "" {
		t.Fatalf("refusal body %q is not an OpenAI error", b)
	}
	return body.Error.Message
}

func wsSend(t testing.TB, c *websocket.Conn, msg any) {
	t.Helper()
	var b []byte
	switch m := msg.(type) {
	case string:
		b = []byte(m)
	default:
		var err error
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func wsRead(t testing.TB, c *websocket.Conn) wsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var ev wsEvent
	if typ != websocket.MessageText || json.Unmarshal(b, &ev) != nil {
		t.Fatalf("server message %q", b)
	}
	return ev
}

// wsCollect reads the events of request id up to its last (done, error or
// cancelled), failing on another request's events.
func wsCollect(t *testing.T, c *websocket.Conn, id string) (chunks []wsEvent, last wsEvent) {
	t.Helper()
	for range 1000 {
		ev := wsRead(t, c)
		if ev.ID != id {
			t.Fatalf("event of %q while waiting for %q: %+v", ev.ID, id, ev)
		}
		if ev.Type != "chunk" {
			return chunks, ev
		}
		chunks = append(chunks, ev)
	}
	t.Fatal("no end of stream in 1000 events")
	return nil, wsEvent{}
}

func wsRequest(id, model, content string, extra ...string) map[string]any {
	body := map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": content}}}
	for i := 0; i+1 < len(extra); i += 2 {
		var v any
		_ = json.Unmarshal([]byte(extra[i+1]), &v)
		body[extra[i]] = v
	}
	return map[string]any{"type": "request", "id": id, "body": body}
}

// wsGateway serves the gateway API with the socket under lim, over one
// OpenAI provider "oa" at up, with stages p.
func wsGateway(t testing.TB, up string, lim api.WSLimits, p pipeline.Stages, mutate func(*api.Config)) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{gatewayKey}, RequireAPIKey: true,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up, APIKeys: []config.Secret{"k"}}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	acfg := api.Config{RequireAPIKey: true, APIKeys: []string{gatewayKey}, Pipeline: p}
	if mutate != nil {
		mutate(&acfg)
	}
	s := api.New(a.Router, a, acfg, clock.Real{}, logging.Discard())
	ws := s.WSHandler(lim)
	srv := httptest.NewServer(httpx.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws" {
			ws.ServeHTTP(w, r)
			return
		}
		s.ServeHTTP(w, r)
	}), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv
}

// sseUpstream is a fake OpenAI provider streaming chat.completion.chunk
// events as a script decides, which sees whether its request's
// connection was closed.
type sseUpstream struct {
	*httptest.Server
	calls  atomic.Int64
	closed chan string // the user message of a request whose connection closed before its end
}

// sseWriter writes OpenAI stream lines and flushes them.
type sseWriter struct {
	w http.ResponseWriter
	r *http.Request
}

func (s sseWriter) line(v string) bool {
	if _, err := io.WriteString(s.w, "data: "+v+"\n\n"); err != nil {
		return false
	}
	http.NewResponseController(s.w).Flush()
	return s.r.Context().Err() == nil
}

func (s sseWriter) content(text string) bool {
	b, _ := json.Marshal(text)
	return s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":` + string(b) + `},"finish_reason":null}],"usage":null}`)
}

func (s sseWriter) start() bool {
	return s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`)
}

func (s sseWriter) finish() {
	s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`)
	s.line(`{"id":"chatcmpl-ws","object":"chat.completion.chunk","created":1753470020,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`)
	s.line("[DONE]")
}

func newSSEUpstream(t testing.TB, script func(s sseWriter, user string)) *sseUpstream {
	u := &sseUpstream{closed: make(chan string, 16)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		var body struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		user := ""
		if len(body.Messages) > 0 {
			user = body.Messages[len(body.Messages)-1].Content
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		script(sseWriter{w, r}, user)
		if r.Context().Err() != nil {
			select {
			case u.closed <- user:
			default:
			}
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// waitClosed waits for the upstream to see the connections of the
// requests whose user messages are users closed, in any order.
func (u *sseUpstream) waitClosed(t *testing.T, users ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range users {
		want[s] = true
	}
	for len(want) > 0 {
		select {
		case got := <-u.closed:
			if !want[got] {
				t.Fatalf("upstream saw %q closed, want %v", got, users)
			}
			delete(want, got)
		case <-time.After(10 * time.Second):
			t.Fatalf("the upstream calls of %v were not cancelled", want)
		}
	}
}

// holdUntilClosed streams one chunk and then waits (bounded) for the
// gateway to close the connection.
func holdUntilClosed(s sseWriter, _ string) {
	s.start()
	s.content("partial answer")
	select {
	case <-s.r.Context().Done():
	case <-time.After(15 * time.Second):
	}
}

// A request through the gateway as assembled (the route registered by
// the api package): chunks in chat.completion.chunk shape, then done with
// the usage and the target.
func TestWSStreamsAChatCompletion(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	c := wsDial(t, gw.URL, keyed())
	for _, includeUsage := range []bool{false, true} {
		id := fmt.Sprintf("r-%v", includeUsage)
		req := wsRequest(id, "oa/gpt-4o", "Weather in Paris and Oslo?")
		if includeUsage {
			req = wsRequest(id, "oa/gpt-4o", "Weather in Paris and Oslo?", "stream_options", `{"include_usage":true}`)
		}
		wsSend(t, c, req)
		chunks, done := wsCollect(t, c, id)
		var text strings.Builder
		usageChunks := 0
		for _, ch := range chunks {
			text.WriteString(ch.content(t))
			if strings.Contains(string(ch.Data), `"choices":[]`) {
				usageChunks++
			}
		}
		if text.String() != "Paris is 18°C and clear; Oslo is 4°C with snow." {
			t.Fatalf("streamed text %q", text.String())
		}
		if done.Type != "done" || done.Model != "oa/gpt-4o" {
			t.Fatalf("last event %+v", done)
		}
		var u struct {
			Prompt     int `json:"prompt_tokens"`
			Completion int `json:"completion_tokens"`
			Total      int `json:"total_tokens"`
		}
		if json.Unmarshal(done.Usage, &u) != nil || u.Prompt != 2190 || u.Completion != 17 || u.Total != 2207 {
			t.Fatalf("done usage %s", done.Usage)
		}
		if want := map[bool]int{false: 0, true: 1}[includeUsage]; usageChunks != want {
			t.Fatalf("include_usage %v: %d usage chunks", includeUsage, usageChunks)
		}
	}
	if up.calls() != 2 || up.bodies[0]["stream"] != true {
		t.Fatalf("upstream calls %d, stream %v", up.calls(), up.bodies[0]["stream"])
	}
}

// Two requests on one socket run at once: each one's first chunk arrives
// before either ends.
func TestWSConcurrentRequestsInterleave(t *testing.T) {
	var mu sync.Mutex
	release := map[string]chan struct{}{"A": make(chan struct{}), "B": make(chan struct{})}
	up := newSSEUpstream(t, func(s sseWriter, user string) {
		mu.Lock()
		ch := release[user]
		mu.Unlock()
		s.start()
		s.content(user + "1")
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			return
		}
		s.content(user + "2")
		s.finish()
	})
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{}, nil)
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("a", "oa/gpt-4o", "A"))
	wsSend(t, c, wsRequest("b", "oa/gpt-4o", "B"))
	first := map[string]string{}
	for len(first) < 2 {
		ev := wsRead(t, c)
		if ev.Type != "chunk" {
			t.Fatalf("event %+v before both requests streamed", ev)
		}
		if txt := ev.content(t); txt != "" {
			first[ev.ID] = txt
		}
	}
	if first["a"] != "A1" || first["b"] != "B1" {
		t.Fatalf("first chunks %v", first)
	}
	close(release["B"])
	close(release["A"])
	text, done := map[string]string{}, map[string]wsEvent{}
	for len(done) < 2 {
		ev := wsRead(t, c)
		switch ev.Type {
		case "chunk":
			text[ev.ID] += ev.content(t)
		case "done":
			done[ev.ID] = ev
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if text["a"] != "A2" || text["b"] != "B2" || len(done["a"].Usage) == 0 || len(done["b"].Usage) == 0 {
		t.Fatalf("rest of the streams %v, done %+v", text, done)
	}
}

// Cancelling a request mid-stream closes the upstream's connection; the
// call is recorded cut short (499) with what was delivered, as a chat
// client leaving is; the socket serves on.
func TestWSCancelStopsTheUpstream(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, user string) {
		if user == "after" {
			s.start()
			s.content("ok")
			s.finish()
			return
		}
		holdUntilClosed(s, user)
	})
	gate := &recordingGate{}
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{Gates: []pipeline.Gate{gate}}, nil)
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("r1", "oa/gpt-4o", "long"))
	for {
		ev := wsRead(t, c)
		if ev.Type != "chunk" {
			t.Fatalf("event %+v before the partial answer", ev)
		}
		if ev.content(t) == "partial answer" {
			break
		}
	}
	wsSend(t, c, map[string]string{"type": "cancel", "id": "r1"})
	if _, last := wsCollect(t, c, "r1"); last.Type != "cancelled" {
		t.Fatalf("after cancel: %+v", last)
	}
	up.waitClosed(t, "long")
	out := gate.outcomesWait(t, 1)[0]
	if out.Status != pipeline.StatusClientClosed || !out.CutShort || out.Usage.OutputTokens == 0 || out.Usage.InputTokens == 0 {
		t.Fatalf("outcome of the cancelled call: %+v", out)
	}
	gate.mu.Lock()
	endpoint := gate.calls[0].Endpoint
	gate.mu.Unlock()
	if endpoint != "/v1/ws" {
		t.Fatalf("call recorded on %q", endpoint)
	}
	// Cancelling what is not in flight is a no-op; the socket serves on.
	wsSend(t, c, map[string]string{"type": "cancel", "id": "r1"})
	wsSend(t, c, wsRequest("r2", "oa/gpt-4o", "after"))
	if _, last := wsCollect(t, c, "r2"); last.Type != "done" {
		t.Fatalf("request after a cancel: %+v", last)
	}
}

// Closing the socket mid-stream cancels its requests' upstream calls.
func TestWSClosingTheSocketStopsTheUpstream(t *testing.T) {
	up := newSSEUpstream(t, holdUntilClosed)
	gate := &recordingGate{}
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{Gates: []pipeline.Gate{gate}}, nil)
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("r1", "oa/gpt-4o", "long"))
	for wsRead(t, c).Type != "chunk" {
	}
	c.Close(websocket.StatusNormalClosure, "")
	up.waitClosed(t, "long")
	if out := gate.outcomesWait(t, 1)[0]; out.Status != pipeline.StatusClientClosed || !out.CutShort {
		t.Fatalf("outcome: %+v", out)
	}
}

// A combo's first target fails with a 500 before any byte: the second
// answers, and done names it.
func TestWSFallsBack(t *testing.T) {
	first := newUpstream(t, replyStatus(500, `{"error":{"message":"boom","type":"server_error"}}`))
	second := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "first", Type: "openai", BaseURL: first.URL, APIKeys: []config.Secret{"k1"}},
			{ID: "second", Type: "openai", BaseURL: second.URL, APIKeys: []config.Secret{"k2"}},
		},
		Combos: []config.RouteCombo{{Name: "team", Strategy: "priority", Targets: []string{"first/m", "second/m"}}},
	})
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("r1", "team", "hi"))
	chunks, done := wsCollect(t, c, "r1")
	if done.Type != "done" || done.Model != "second/m" || len(chunks) == 0 || first.calls() != 1 || second.calls() != 1 {
		t.Fatalf("fallback: done %+v, %d chunks, calls %d/%d", done, len(chunks), first.calls(), second.calls())
	}
	// Every target failing is an error event with the attempts.
	gw = gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "first", Type: "openai", BaseURL: first.URL, APIKeys: []config.Secret{"k1"}},
			{ID: "again", Type: "openai", BaseURL: first.URL, APIKeys: []config.Secret{"k2"}},
		},
		Combos: []config.RouteCombo{{Name: "team", Strategy: "priority", Targets: []string{"first/m", "again/m"}}},
	})
	c = wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("r2", "team", "hi"))
	if _, last := wsCollect(t, c, "r2"); last.Type != "error" || last.Status != 500 || len(last.Attempts) != 2 || last.Error == nil {
		t.Fatalf("exhausted: %+v", last)
	}
}

// Messages the gateway cannot act on get an error event in OpenAI's
// shape; the socket stays open and serves the next request.
func TestWSBadMessagesGetErrorEvents(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	c := wsDial(t, gw.URL, keyed())
	for _, m := range []struct {
		name, msg, id string
		status        int
		says          string
	}{
		{"not JSON", `hello`, "", 400, "JSON object"},
		{"JSON but not an object", `[1,2]`, "", 400, "JSON object"},
		{"unknown type", `{"type":"subscribe","id":"x1"}`, "x1", 400, "subscribe"},
		{"no id", `{"type":"request","body":{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}}`, "", 400, "id"},
		{"id too long", `{"type":"request","id":"` + strings.Repeat("x", 200) + `","body":{}}`, "", 400, "id"},
		{"no body", `{"type":"request","id":"x2"}`, "x2", 400, "body"},
		{"missing model", `{"type":"request","id":"x3","body":{"messages":[{"role":"user","content":"hi"}]}}`, "x3", 400, "model"},
		{"no messages", `{"type":"request","id":"x4","body":{"model":"oa/gpt-4o"}}`, "x4", 400, "messages"},
		{"unknown model", `{"type":"request","id":"x5","body":{"model":"nope/none","messages":[{"role":"user","content":"hi"}]}}`, "x5", 404, ""},
	} {
		wsSend(t, c, m.msg)
		ev := wsRead(t, c)
		if ev.Type != "error" || ev.ID != m.id || ev.Status != m.status || ev.Error == nil || ev.Error.Type != "invalid_request_error" ||
			!strings.Contains(ev.Error.Message, m.says) {
			t.Fatalf("%s: %+v %+v", m.name, ev, ev.Error)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if ev := wsRead(t, c); ev.Type != "error" || ev.Status != 400 {
		t.Fatalf("binary message: %+v", ev)
	}
	wsSend(t, c, wsRequest("ok", "oa/gpt-4o", "hi"))
	if _, last := wsCollect(t, c, "ok"); last.Type != "done" {
		t.Fatalf("after bad messages: %+v", last)
	}
	if up.calls() != 1 {
		t.Fatalf("bad messages reached the upstream: %d calls", up.calls())
	}
}

// Without a valid key the upgrade is refused with a 401 before any
// socket exists; a key in the URL is refused; the key may come as a
// subprotocol (browsers), which is never echoed.
func TestWSHandshakeNeedsAKey(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	wsRefused(t, gw.URL, nil, http.StatusUnauthorized)
	wsRefused(t, gw.URL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer wrong"}}}, http.StatusUnauthorized)
	wsRefused(t, gw.URL, &websocket.DialOptions{Subprotocols: []string{"omniroute.v1", "omniroute.key.wrong"}}, http.StatusUnauthorized)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, wsURL(gw.URL)+"?key="+gatewayKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("key in the URL: %v %+v", err, resp)
	}
	// The key offered without the protocol would fail in a browser.
	wsRefused(t, gw.URL, &websocket.DialOptions{Subprotocols: []string{"omniroute.key." + gatewayKey}}, http.StatusBadRequest)

	c := wsDial(t, gw.URL, &websocket.DialOptions{Subprotocols: []string{"omniroute.v1", "omniroute.key." + gatewayKey}})
	if c.Subprotocol() != "omniroute.v1" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	wsSend(t, c, wsRequest("r1", "oa/gpt-4o", "hi"))
	if _, last := wsCollect(t, c, "r1"); last.Type != "done" {
		t.Fatalf("with the key as a subprotocol: %+v", last)
	}
	// A plain GET is told it is no upgrade, in OpenAI's shape.
	req, _ := http.NewRequest("GET", gw.URL+"/v1/ws", nil)
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp); resp.StatusCode != http.StatusUpgradeRequired || !strings.Contains(b, `"invalid_request_error"`) {
		t.Fatalf("plain GET: %d %s", resp.StatusCode, b)
	}
}

// A web page in the operator's browser cannot open the socket of a
// gateway that serves keyless local clients: a foreign (or opaque)
// Origin is refused without a key. The page of the gateway's own origin
// and a page holding a key may.
func TestWSForeignOriginRefused(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, _ string) { s.start(); s.content("ok"); s.finish() })
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{}, func(c *api.Config) {
		c.RequireAPIKey, c.APIKeys = false, []string{gatewayKey}
		c.LocalClient = func(*http.Request) bool { return true } // every client is "local": the page's request too
	})
	for _, origin := range []string{"http://evil.example", "null", "http://evil.example@" + strings.TrimPrefix(gw.URL, "http://"), "https://" + strings.TrimPrefix(gw.URL, "http://") + ".evil.example"} {
		msg := wsRefused(t, gw.URL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}}, http.StatusForbidden)
		if !strings.Contains(msg, "another site") {
			t.Fatalf("origin %q: %s", origin, msg)
		}
	}
	// The handshake check says so too, over plain HTTP.
	req, _ := http.NewRequest("GET", gw.URL+"/v1/ws?handshake=1", nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := drain(t, resp); !strings.Contains(b, `"valid":false`) || !strings.Contains(b, "another site") {
		t.Fatalf("handshake check of a foreign origin: %s", b)
	}
	// Same origin, keyless (a page the gateway serves) and a foreign
	// page with a key are served.
	for _, opts := range []*websocket.DialOptions{
		{HTTPHeader: http.Header{"Origin": {gw.URL}}},
		{HTTPHeader: http.Header{"Origin": {"http://app.example"}}, Subprotocols: []string{"omniroute.v1", "omniroute.key." + gatewayKey}},
	} {
		c := wsDial(t, gw.URL, opts)
		wsSend(t, c, wsRequest("r", "oa/gpt-4o", "hi"))
		if _, last := wsCollect(t, c, "r"); last.Type != "done" {
			t.Fatalf("%v: %+v", opts.HTTPHeader, last)
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// GET /v1/ws?handshake=1 answers JSON: whether the upgrade headers are
// valid, and the protocol's example messages. It takes the key as the
// socket does.
func TestWSHandshakeCheck(t *testing.T) {
	gw := gateway(t, config.RouteConfig{})
	get := func(h http.Header) (int, map[string]any) {
		req, _ := http.NewRequest("GET", gw.URL+"/v1/ws?handshake=1", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(drain(t, resp)), &out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	if status, out := get(http.Header{}); status != http.StatusUnauthorized || out["error"] == nil {
		t.Fatalf("without a key: %d %v", status, out)
	}
	status, out := get(http.Header{"Authorization": {"Bearer " + gatewayKey}})
	problems, _ := out["problems"].([]any)
	if status != 200 || out["valid"] != false || len(problems) != 4 || out["subprotocol"] != "omniroute.v1" {
		t.Fatalf("plain GET: %d %v", status, out)
	}
	ex, _ := out["examples"].(map[string]any)
	req, _ := ex["request"].(map[string]any)
	cancel, _ := ex["cancel"].(map[string]any)
	if req["type"] != "request" || req["id"] != "r1" || req["body"] == nil || cancel["type"] != "cancel" || cancel["id"] != "r1" {
		t.Fatalf("examples: %v", ex)
	}
	status, out = get(http.Header{"Authorization": {"Bearer " + gatewayKey}, "Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {"omniroute.v1"}})
	if status != 200 || out["valid"] != true || len(out["problems"].([]any)) != 0 {
		t.Fatalf("valid headers: %d %v", status, out)
	}
	status, out = get(http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"8"},
		"Sec-Websocket-Key": {"short"}, "Sec-Websocket-Protocol": {"omniroute.key." + gatewayKey}})
	if status != 200 || out["valid"] != false || len(out["problems"].([]any)) != 3 {
		t.Fatalf("bad headers with the key as a subprotocol: %d %v", status, out)
	}
}

// The caps: requests in flight per socket, duplicate ids, sockets per
// key, and the message size.
func TestWSCaps(t *testing.T) {
	up := newSSEUpstream(t, holdUntilClosed)
	lim := api.DefaultWSLimits()
	lim.MaxInFlight, lim.PerKey, lim.MaxMessage = 2, 2, 4096
	gw := wsGateway(t, up.URL, lim, pipeline.Stages{}, nil)
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("a", "oa/gpt-4o", "A"))
	wsSend(t, c, wsRequest("a", "oa/gpt-4o", "A again"))
	wsSend(t, c, wsRequest("b", "oa/gpt-4o", "B"))
	wsSend(t, c, wsRequest("c", "oa/gpt-4o", "C"))
	refused := map[string]wsEvent{}
	for chunks := 0; len(refused) < 2 || chunks < 4; {
		ev := wsRead(t, c)
		switch ev.Type {
		case "chunk":
			chunks++
		case "error":
			refused[ev.ID] = ev
		default:
			t.Fatalf("event %+v", ev)
		}
	}
	if refused["a"].Status != http.StatusConflict || refused["c"].Status != http.StatusTooManyRequests || refused["c"].Error.Type != "rate_limit_error" {
		t.Fatalf("refusals %+v", refused)
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("%d upstream calls, want 2", n)
	}

	c2 := wsDial(t, gw.URL, keyed())
	wsRefused(t, gw.URL, keyed(), http.StatusTooManyRequests)
	c2.Close(websocket.StatusNormalClosure, "")
	// The socket's place is free again once it closed.
	testenv.Eventually(t, "a socket freed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c3, _, err := websocket.Dial(ctx, wsURL(gw.URL), keyed())
		if err != nil {
			return false
		}
		c3.CloseNow()
		return true
	})

	// A message over the read limit closes the socket with 1009 and
	// cancels its requests' upstream calls.
	wsSend(t, c, `{"type":"request","id":"big","body":{"model":"oa/gpt-4o","messages":[{"role":"user","content":"`+strings.Repeat("x", 8192)+`"}]}}`)
	var err error
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err = c.Read(ctx)
		cancel()
		if err != nil {
			break
		}
	}
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("oversize message: %v", err)
	}
	up.waitClosed(t, "A", "B")
}

// A client that never reads is disconnected once a write is stuck for the
// write timeout; the upstream's call is cancelled, so nothing piles up.
func TestWSClientThatNeverReadsIsDisconnected(t *testing.T) {
	var sent atomic.Int64
	chunk := strings.Repeat("z", 32<<10)
	up := newSSEUpstream(t, func(s sseWriter, _ string) {
		s.start()
		for range 4096 { // at most 128 MiB
			if !s.content(chunk) {
				return
			}
			sent.Add(int64(len(chunk)))
		}
	})
	lim := api.DefaultWSLimits()
	lim.WriteTimeout = 300 * time.Millisecond
	gate := &recordingGate{}
	gw := wsGateway(t, up.URL, lim, pipeline.Stages{Gates: []pipeline.Gate{gate}}, nil)
	c := wsDial(t, gw.URL, keyed())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	wsSend(t, c, wsRequest("r1", "oa/gpt-4o", "flood"))
	up.waitClosed(t, "flood")
	runtime.ReadMemStats(&after)
	t.Logf("upstream sent %d KiB before the gateway dropped a client that never reads; heap in use %+d KiB (whole test process, no GC)",
		sent.Load()>>10, (int64(after.HeapInuse)-int64(before.HeapInuse))>>10)
	if sent.Load() >= 4096*int64(len(chunk)) {
		t.Fatal("the whole answer was taken from the upstream")
	}
	if out := gate.outcomesWait(t, 1)[0]; out.Status != pipeline.StatusClientClosed || !out.CutShort {
		t.Fatalf("outcome: %+v", out)
	}
}

// A socket with nothing in flight is closed after the idle timeout; a
// client that does not answer pings is disconnected; one that does is
// pinged and kept.
func TestWSIdleAndKeepalive(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, _ string) { s.start(); s.content("ok"); s.finish() })
	lim := api.DefaultWSLimits()
	lim.Idle = 300 * time.Millisecond
	gw := wsGateway(t, up.URL, lim, pipeline.Stages{}, nil)
	c := wsDial(t, gw.URL, keyed())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("idle socket: %v", err)
	}

	lim = api.DefaultWSLimits()
	lim.PingInterval, lim.PongTimeout = 50*time.Millisecond, 5*time.Second // room for a loaded machine
	gw = wsGateway(t, up.URL, lim, pipeline.Stages{}, nil)
	var pings atomic.Int64
	opts := keyed()
	opts.OnPingReceived = func(context.Context, []byte) bool { pings.Add(1); return true }
	alive := wsDial(t, gw.URL, opts)
	readErr := make(chan error, 1)
	go func() {
		_, _, err := alive.Read(context.Background()) // answers pings while it reads
		readErr <- err
	}()
	testenv.Eventually(t, "pings answered", func() bool { return pings.Load() >= 3 })
	select {
	case err := <-readErr:
		t.Fatalf("a client answering pings was disconnected: %v", err)
	default:
	}
	alive.CloseNow()

	lim.PongTimeout = 200 * time.Millisecond
	gw = wsGateway(t, up.URL, lim, pipeline.Stages{}, nil)
	opts = keyed()
	opts.OnPingReceived = func(context.Context, []byte) bool { return false } // never answers
	dead := wsDial(t, gw.URL, opts)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, _, err := dead.Read(ctx2); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a client not answering pings: %v", err)
	}
}

// The gates see socket requests as chat requests: a refusal is an error
// event with its status, and a cached answer is replayed as a stream.
func TestWSPassesTheGatesAndTheCache(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, _ string) { s.start(); s.content("cached"); s.finish() })
	gate := &recordingGate{}
	cache := &mapCache{m: map[string]*llm.Response{}}
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{Gates: []pipeline.Gate{gate}, Cache: cache}, nil)
	c := wsDial(t, gw.URL, keyed())
	for i, want := range []string{"MISS", "HIT"} {
		id := fmt.Sprint("r", i)
		wsSend(t, c, wsRequest(id, "oa/gpt-4o", "hi", "temperature", "0"))
		chunks, done := wsCollect(t, c, id)
		text := ""
		for _, ch := range chunks {
			text += ch.content(t)
		}
		if done.Type != "done" || done.Cache != want || text != "cached" {
			t.Fatalf("request %d: %q, %+v", i, text, done)
		}
	}
	if up.calls.Load() != 1 {
		t.Fatalf("upstream called %d times", up.calls.Load())
	}
	gate.mu.Lock()
	gate.refuse = &llm.Error{Status: http.StatusTooManyRequests, Type: llm.ErrRateLimit, Message: "rpm exceeded", RetryAfter: time.Second}
	gate.mu.Unlock()
	wsSend(t, c, wsRequest("r9", "oa/gpt-4o", "hi"))
	if _, last := wsCollect(t, c, "r9"); last.Type != "error" || last.Status != 429 || last.Error.Type != "rate_limit_error" {
		t.Fatalf("refused by a gate: %+v", last)
	}
}

// On shutdown an idle socket is closed with 1001 and new sockets are
// refused, so the server's drain does not wait on them.
func TestWSShutdownClosesSockets(t *testing.T) {
	up := newSSEUpstream(t, func(s sseWriter, _ string) { s.start(); s.content("ok"); s.finish() })
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{}, nil)
	c := wsDial(t, gw.URL, keyed())
	wsSend(t, c, wsRequest("r", "oa/gpt-4o", "hi"))
	if _, last := wsCollect(t, c, "r"); last.Type != "done" {
		t.Fatalf("%+v", last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gw.Config.Shutdown(ctx) }()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("socket at shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Request ids are the socket's own: another socket (another key's
// holder) cancelling the same id leaves the request running.
func TestWSRequestIDsAreScopedToTheSocket(t *testing.T) {
	release := make(chan struct{})
	up := newSSEUpstream(t, func(s sseWriter, _ string) {
		s.start()
		s.content("one")
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return
		}
		s.finish()
	})
	gw := wsGateway(t, up.URL, api.DefaultWSLimits(), pipeline.Stages{}, nil)
	owner, other := wsDial(t, gw.URL, keyed()), wsDial(t, gw.URL, keyed())
	wsSend(t, owner, wsRequest("r1", "oa/gpt-4o", "hi"))
	for wsRead(t, owner).Type != "chunk" {
	}
	wsSend(t, other, map[string]string{"type": "cancel", "id": "r1"})
	// The other socket's cancel is done once its next message is handled.
	wsSend(t, other, `{"type":"nope","id":"probe"}`)
	if ev := wsRead(t, other); ev.Type != "error" || ev.ID != "probe" {
		t.Fatalf("other socket: %+v", ev)
	}
	close(release)
	if _, last := wsCollect(t, owner, "r1"); last.Type != "done" {
		t.Fatalf("a cancel from another socket ended the request: %+v", last)
	}
}

// BenchmarkChatStream measures one streamed chat completion, request to
// last event, against an instant upstream: over the socket (one request
// at a time, and 8 in flight) and over POST /v1/chat/completions.
//
//	go test ./internal/route/api -run '^$' -bench BenchmarkChatStream -benchmem
func BenchmarkChatStream(b *testing.B) {
	up := newSSEUpstream(b, func(s sseWriter, _ string) {
		s.start()
		for i := range 20 {
			s.content(fmt.Sprint("token", i, " "))
		}
		s.finish()
	})
	gw := wsGateway(b, up.URL, api.DefaultWSLimits(), pipeline.Stages{}, nil)
	req := wsRequest("r", "oa/gpt-4o", "hi")
	b.Run("ws", func(b *testing.B) {
		c := wsDial(b, gw.URL, keyed())
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			req["id"] = fmt.Sprint("r", i)
			wsSend(b, c, req)
			for ev := wsRead(b, c); ev.Type != "done"; ev = wsRead(b, c) {
				if ev.Type != "chunk" {
					b.Fatalf("%+v", ev)
				}
			}
		}
	})
	b.Run("ws-8-in-flight", func(b *testing.B) {
		c := wsDial(b, gw.URL, keyed())
		b.ReportAllocs()
		sent, done := 0, 0
		for b.Loop() {
			for sent-done < 8 {
				req["id"] = fmt.Sprint("r", sent)
				wsSend(b, c, req)
				sent++
			}
			for ev := wsRead(b, c); ev.Type != "done"; ev = wsRead(b, c) {
				if ev.Type != "chunk" {
					b.Fatalf("%+v", ev)
				}
			}
			done++
		}
		for ; done < sent; done++ {
			for ev := wsRead(b, c); ev.Type != "done"; ev = wsRead(b, c) {
			}
		}
	})
	b.Run("sse", func(b *testing.B) {
		body := `{"model":"oa/gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		b.ReportAllocs()
		for b.Loop() {
			r, _ := http.NewRequest("POST", gw.URL+"/v1/chat/completions", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+gatewayKey)
			r.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasSuffix(string(out), "data: [DONE]\n\n") {
				b.Fatalf("%s", out)
			}
		}
	})
}

// The chunks are the ones the official SDK reads: its accumulator,
// fed the socket's data, rebuilds the answer, whichever format the
// upstream speaks (tool calls included).
func TestWSChunksReadByTheOpenAISDK(t *testing.T) {
	for _, up := range []struct{ name, typ, json, sse string }{
		{"openai upstream", "openai", "openai/testdata/parallel_tools.json", "openai/testdata/parallel_tools.sse"},
		{"anthropic upstream", "anthropic", "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse"},
	} {
		t.Run(up.name, func(t *testing.T) {
			u := newUpstream(t, replyFixture(t, up.json, up.sse))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: up.typ, BaseURL: u.URL, APIKeys: []config.Secret{"k"}}}})
			c := wsDial(t, gw.URL, keyed())
			wsSend(t, c, wsRequest("r1", "p/model", "Weather in Paris and Oslo?", "stream_options", `{"include_usage":true}`))
			chunks, done := wsCollect(t, c, "r1")
			acc := openai.ChatCompletionAccumulator{}
			for _, ch := range chunks {
				var chunk openai.ChatCompletionChunk
				if err := json.Unmarshal(ch.Data, &chunk); err != nil {
					t.Fatal(err)
				}
				if !acc.AddChunk(chunk) {
					t.Fatalf("the SDK refused chunk %s", ch.Data)
				}
			}
			calls := acc.Choices[0].Message.ToolCalls
			if done.Type != "done" || len(calls) != 2 || acc.Choices[0].FinishReason != "tool_calls" ||
				!strings.Contains(calls[1].Function.Arguments, "Oslo") || acc.Usage.TotalTokens == 0 {
				t.Fatalf("accumulated %+v, done %+v", acc.ChatCompletion, done)
			}
		})
	}
}
