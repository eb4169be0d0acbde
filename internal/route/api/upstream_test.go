package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/openai/openai-go/v3"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/routetest"
)

const hiChat = `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`

// An upstream that answers with a redirect does not get the request
// (with the provider's key) forwarded to wherever it points: the
// redirect is an upstream error.
func TestUpstreamRedirectsAreNotFollowed(t *testing.T) {
	var mu sync.Mutex
	var stolen []string
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stolen = append(stolen, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"from the attacker"},"finish_reason":"stop"}]}`))
	}))
	defer attacker.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
				w.Header().Set("Location", attacker.URL+"/v1/chat/completions")
				w.WriteHeader(code)
			})
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
			r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", hiChat, "Authorization", "Bearer "+gatewayKey)
			if r.Status < 500 || strings.Contains(string(r.Body), "attacker") || strings.Contains(string(r.Body), attacker.URL) {
				t.Fatalf("status %d, want an upstream error that does not name the target: %s", r.Status, r.Body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(stolen) > 0 {
				t.Fatalf("the redirect was followed: the attacker got %q", stolen)
			}
		})
	}
}

// A model name cannot rewrite the URL of a Gemini upstream: dot
// segments, a query or a fragment in it are refused before any call.
func TestGeminiModelCannotChangeUpstreamPath(t *testing.T) {
	rec := newRecorder(t, replyGemini(t, "gemini/testdata/streams/parallel_tools.sse", "gemini/testdata/responses/text.json"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "g", Type: "gemini", BaseURL: rec.URL + "/v1beta", APIKeys: []config.Secret{"AIza-provider"}}}})
	for _, model := range []string{"g/../../v1/files?x=", "g/..%2f..%2fv1%2ffiles", "g/models/../cachedContents", "g/gemini#frag", "g/a b", "g/gemini-2.5-flash:streamGenerateContent?alt=sse&x=", "g/tunedModels/../../x"} {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, model)
		r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", body, "Authorization", "Bearer "+gatewayKey)
		if r.Status != http.StatusBadRequest {
			t.Errorf("model %q: status %d, want 400: %s", model, r.Status, r.Body)
		}
	}
	rec.mu.Lock()
	paths := append([]string(nil), rec.paths...)
	rec.mu.Unlock()
	if len(paths) > 0 {
		t.Fatalf("the upstream was called with %q", paths)
	}
	// Ordinary names still work, with or without the models/ prefix.
	for _, model := range []string{"g/gemini-2.5-flash", "g/models/gemini-2.0-flash-001"} {
		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, model)
		if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", body, "Authorization", "Bearer "+gatewayKey); r.Status != http.StatusOK {
			t.Fatalf("model %q: %d %s", model, r.Status, r.Body)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gemini-2.0-flash-001:generateContent"}
	if strings.Join(rec.paths, " ") != strings.Join(want, " ") {
		t.Fatalf("upstream paths %q, want %q", rec.paths, want)
	}
}

// A non-streamed upstream answer larger than the cap (32 MiB by default)
// is an upstream error, not 32 MiB held per request and more.
func TestUpstreamBodyIsCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a 40 MiB answer")
	}
	big := strings.Repeat("a", 40<<20)
	up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}]}`, big)
	})
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
	r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", hiChat, "Authorization", "Bearer "+gatewayKey)
	if r.Status != http.StatusBadGateway || !strings.Contains(string(r.Body), "larger than") {
		t.Fatalf("status %d, want 502 saying the answer is too large: %.300s", r.Status, r.Body)
	}
}

// The configured cap on a non-streamed answer is applied in one place for
// every provider adapter, whatever content type the upstream gives its
// answer: a stream type does not turn the total cap into a per-line one
// for a request that did not ask for a stream. Over the cap the client
// gets a clean 502 that names the cap, not the upstream.
func TestUpstreamBodyCapIsTheSameForEveryAdapter(t *testing.T) {
	const limit = 64 << 10
	text := strings.Repeat("a", 100<<10) // a valid answer above the cap
	small := strings.Repeat("b", 16<<10) // and one below it
	answers := map[string]func(string) string{
		"openai": func(s string) string {
			return `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + s + `"},"finish_reason":"stop"}]}`
		},
		"anthropic": func(s string) string {
			return `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"` + s + `"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`
		},
		"ollama": func(s string) string {
			return `{"model":"m","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"` + s + `"},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":1}`
		},
	}
	for typ, answer := range answers {
		for _, ct := range []string{"application/json", "text/event-stream", "application/x-ndjson"} {
			t.Run(typ+" "+ct, func(t *testing.T) {
				var content atomic.Value
				content.Store(text)
				up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
					w.Header().Set("Content-Type", ct)
					io.WriteString(w, answer(content.Load().(string)))
				})
				gw := gateway(t, config.RouteConfig{UpstreamMaxBody: limit,
					Providers: []config.RouteProvider{{ID: "up", Type: typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
				chat := `{"model":"up/m","messages":[{"role":"user","content":"hi"}]}`
				r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", chat, "Authorization", "Bearer "+gatewayKey)
				var e struct {
					Error struct{ Message string } `json:"error"`
				}
				if r.Status != http.StatusBadGateway || json.Unmarshal(r.Body, &e) != nil || !strings.Contains(e.Error.Message, "larger than 65536 bytes") {
					t.Fatalf("status %d, want a JSON 502 naming the 64 KiB cap: %.300s", r.Status, r.Body)
				}
				host := strings.TrimPrefix(up.URL, "http://")
				_, port, _ := net.SplitHostPort(host)
				for _, leak := range []string{host, port, "http://"} {
					if strings.Contains(string(r.Body), leak) {
						t.Fatalf("the error reveals %q: %s", leak, r.Body)
					}
				}
				content.Store(small)
				if r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", chat, "Authorization", "Bearer "+gatewayKey); r.Status != http.StatusOK || !strings.Contains(string(r.Body), small) {
					t.Fatalf("an answer under the cap: %d %.300s", r.Status, r.Body)
				}
			})
		}
	}
}

// One line of an upstream stream longer than the cap (4 MiB by default)
// ends the stream with an error event in the client's dialect; none of
// that line reaches the client.
func TestUpstreamStreamLineIsCapped(t *testing.T) {
	long := strings.Repeat("a", 5<<20)
	for _, c := range []struct {
		typ, stream, msg string
	}{
		{"openai", `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"first"}}]}` + "\n\n" +
			`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + long + `"}}]}` + "\n\n" +
			`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n",
			// The OpenAI decoder sees the cut line as an unreadable chunk.
			"unreadable"},
		{"anthropic", "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":0}}}` + "\n\n" +
			"event: content_block_start\ndata: " + `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
			"event: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"first"}}` + "\n\n" +
			"event: content_block_delta\ndata: " + `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"` + long + `"}}` + "\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			"longer than 4194304 bytes"},
	} {
		t.Run(c.typ, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, c.stream)
			})
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: c.typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
			oc := openAIClient(gw.URL)
			st := oc.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "up/m",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
			var text strings.Builder
			for st.Next() {
				for _, ch := range st.Current().Choices {
					text.WriteString(ch.Delta.Content)
				}
			}
			if st.Err() == nil || !strings.Contains(st.Err().Error(), c.msg) || text.String() != "first" {
				t.Fatalf("stream error %v after %d bytes of text, want an error (%q) right after \"first\"", st.Err(), text.Len(), c.msg)
			}
		})
	}
}

// Transport failures reach clients without the upstream's address: a
// provider's base URL is configuration (often an internal host) that a
// gateway key holder has no business learning.
func TestTransportErrorsDoNotRevealUpstreamAddresses(t *testing.T) {
	closed := testenv.FreeTCP(t) // nothing listens there
	_, closedPort, _ := net.SplitHostPort(closed)
	// An upstream that resets the connection in the middle of its answer.
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"id":"c1","object":"chat.comp`))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0) // RST instead of FIN
		conn.Close()
	}))
	defer reset.Close()
	_, resetPort, _ := net.SplitHostPort(strings.TrimPrefix(reset.URL, "http://"))
	for name, base := range map[string]string{
		"connection refused": "http://" + closed + "/v1",
		"reset mid-answer":   reset.URL + "/v1",
	} {
		t.Run(name, func(t *testing.T) {
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: base, APIKeys: []config.Secret{"sk-provider"}}}})
			r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions", hiChat, "Authorization", "Bearer "+gatewayKey)
			if r.Status < 500 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			body := string(r.Body)
			for _, leak := range []string{"127.0.0.1", closedPort, resetPort, "http://", "/v1/chat/completions", "dial", "tcp"} {
				if strings.Contains(body, leak) {
					t.Fatalf("the error reveals %q: %s", leak, body)
				}
			}
			if !strings.Contains(body, "upstream") {
				t.Fatalf("the error does not say the upstream failed: %s", body)
			}
		})
	}
	// The same through a stream: the error event is scrubbed too.
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: "http://" + closed + "/v1", APIKeys: []config.Secret{"sk-provider"}}}})
	oc := openAIClient(gw.URL)
	st := oc.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "oa/gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	for st.Next() {
	}
	var apiErr *openai.Error
	if err := st.Err(); err == nil || strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), closedPort) {
		t.Fatalf("stream error %v", err)
	} else if errors.As(err, &apiErr) && strings.Contains(apiErr.RawJSON(), "127.0.0.1") {
		t.Fatalf("stream error body %s", apiErr.RawJSON())
	}
}

// A stream whose upstream goes silent ends, after the configured idle
// time, with an error event in the client's dialect, instead of holding
// the client (and a connection, and a budget reservation) forever.
func TestSilentUpstreamStreamEnds(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"first"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-release
	})
	defer close(release) // before the upstream's Close waits for this handler
	gw := gateway(t, config.RouteConfig{UpstreamIdleTimeout: 300 * time.Millisecond,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	oc := openAIClient(gw.URL)
	st := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "oa/gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var text strings.Builder
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the stream was still open after 20 s")
	}
	if err := st.Err(); err == nil || !strings.Contains(err.Error(), "sent nothing for 300ms") || text.String() != "first" {
		t.Fatalf("stream ended with %v after %q", err, text.String())
	}
	// The Anthropic SDK over the same upstream: its own error event.
	ac := anthropicClient(gw)
	as := ac.Messages.NewStreaming(ctx, asdk.MessageNewParams{Model: "oa/gpt-4o", MaxTokens: 10,
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}})
	for as.Next() {
	}
	if err := as.Err(); err == nil || !strings.Contains(err.Error(), "sent nothing") || ctx.Err() != nil {
		t.Fatalf("Anthropic stream ended with %v", err)
	}
}
