package ws

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// headerHasToken reports whether a comma-separated header holds token
// (case-insensitive), as Connection: keep-alive, Upgrade does.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// handshakeProblems lists what makes r no valid upgrade to the socket
// (RFC 6455 section 4.2.1, and the gateway's subprotocol); the origin is
// checked apart.
func handshakeProblems(r *http.Request) []string {
	var p []string
	if !r.ProtoAtLeast(1, 1) {
		p = append(p, "the handshake needs HTTP/1.1")
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		p = append(p, "Connection: Upgrade is missing")
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		p = append(p, "Upgrade: websocket is missing")
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		p = append(p, "Sec-WebSocket-Version must be 13")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		p = append(p, "one Sec-WebSocket-Key is required")
	} else if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		p = append(p, "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	if key, others := offeredProtocols(r); (key != "" || len(others) > 0) && !slices.Contains(others, wsSubprotocol) {
		p = append(p, "offer the subprotocol "+wsSubprotocol+" (Sec-WebSocket-Protocol)")
	}
	return p
}

// wsHandshake is the answer of GET /v1/ws?handshake=1.
type wsHandshake struct {
	Object      string         `json:"object"`
	Valid       bool           `json:"valid"`
	Problems    []string       `json:"problems"`
	URL         string         `json:"url"`
	Subprotocol string         `json:"subprotocol"`
	Auth        []string       `json:"auth"`
	Limits      wsLimitsOut    `json:"limits"`
	Examples    wsExamples     `json:"examples"`
	Events      map[string]any `json:"events"`
}

type wsLimitsOut struct {
	MaxMessageBytes     int64 `json:"max_message_bytes"`
	MaxInFlight         int   `json:"max_in_flight"`
	SocketsPerKey       int   `json:"sockets_per_key"`
	IdleTimeoutSeconds  int64 `json:"idle_timeout_seconds"`
	WriteTimeoutSeconds int64 `json:"write_timeout_seconds"`
	PingIntervalSeconds int64 `json:"ping_interval_seconds"`
}

type wsExamples struct {
	Request json.RawMessage `json:"request"`
	Cancel  json.RawMessage `json:"cancel"`
}

// The protocol's example messages.
var (
	wsExampleRequest = json.RawMessage(`{"type":"request","id":"r1","body":{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"stream_options":{"include_usage":true}}}`)
	wsExampleCancel  = json.RawMessage(`{"type":"cancel","id":"r1"}`)
	wsExampleEvents  = map[string]any{
		"chunk":     json.RawMessage(`{"type":"chunk","id":"r1","data":{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1753470020,"model":"openai/gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}}`),
		"done":      json.RawMessage(`{"type":"done","id":"r1","usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11},"model":"openai/gpt-4o-mini"}`),
		"error":     json.RawMessage(`{"type":"error","id":"r1","status":404,"error":{"message":"model openai/nope is not configured","type":"invalid_request_error","code":null}}`),
		"cancelled": json.RawMessage(`{"type":"cancelled","id":"r1"}`),
	}
)

// handshake answers GET /v1/ws?handshake=1 as plain HTTP: whether the
// request's headers would upgrade, and the protocol's example messages.
// It never upgrades.
func (h *wsHub) handshake(w http.ResponseWriter, r *http.Request) error {
	p := handshakeProblems(r)
	if foreignOrigin(r) && h.g.KeyID(r.Context()) == "" {
		p = append(p, errCrossOrigin.Message)
	}
	if p == nil {
		p = []string{}
	}
	httpx.WriteJSON(w, http.StatusOK, wsHandshake{
		Object: "websocket.handshake", Valid: len(p) == 0, Problems: p, URL: "/v1/ws", Subprotocol: wsSubprotocol,
		Auth: []string{"Authorization: Bearer <key>", "Sec-WebSocket-Protocol: " + wsSubprotocol + ", " + wsKeyPrefix + "<key>"},
		Limits: wsLimitsOut{MaxMessageBytes: h.lim.MaxMessage, MaxInFlight: h.lim.MaxInFlight, SocketsPerKey: h.lim.PerKey,
			IdleTimeoutSeconds: int64(h.lim.Idle.Seconds()), WriteTimeoutSeconds: int64(h.lim.WriteTimeout.Seconds()),
			PingIntervalSeconds: int64(h.lim.PingInterval.Seconds())},
		Examples: wsExamples{Request: wsExampleRequest, Cancel: wsExampleCancel},
		Events:   wsExampleEvents,
	})
	return nil
}
