package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// progressGateway is gateway with the progress heartbeat at every.
func progressGateway(t *testing.T, route config.RouteConfig, every time.Duration) *httptest.Server {
	t.Helper()
	cfg := config.Default()
	route.APIKeys = []config.Secret{gatewayKey}
	route.RequireAPIKey = true
	cfg.Route = route
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	a.API.SetProgressInterval(every)
	srv := httptest.NewServer(httpx.Wrap(a.API, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return srv
}

type progressEvent struct {
	Stage     string         `json:"stage"`
	ElapsedMS int64          `json:"elapsed_ms"`
	Target    string         `json:"target"`
	Attempt   int            `json:"attempt"`
	Status    int            `json:"status"`
	Usage     map[string]any `json:"usage"`
}

// progressLines parses the progress comments of a raw SSE body and
// reports whether it had any other comment line.
func progressLines(t *testing.T, body []byte) (evs []progressEvent, otherComments bool) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, ":") {
			continue
		}
		rest, ok := strings.CutPrefix(line, ": omniroute-progress ")
		if !ok {
			otherComments = true
			continue
		}
		var ev progressEvent
		if err := json.Unmarshal([]byte(rest), &ev); err != nil {
			t.Fatalf("progress line %q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	return evs, otherComments
}

func stages(evs []progressEvent) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Stage)
	}
	return strings.Join(s, ",")
}

func progressPost(t *testing.T, ctx context.Context, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const chatStream = `{"model":"oa/gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"secret prompt"}]}`

func TestProgressOpenAIStream(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}}, time.Hour)

	for _, v := range []string{"true", "TRUE", "1"} {
		resp := progressPost(t, context.Background(), gw.URL+"/v1/chat/completions", chatStream, "X-OmniRoute-Progress", v)
		body := readAll(t, resp)
		if got := resp.Header.Get("X-OmniRoute-Progress"); got != "enabled" || resp.StatusCode != 200 {
			t.Fatalf("%s: status %d, header %q", v, resp.StatusCode, got)
		}
		evs, other := progressLines(t, body)
		if got := stages(evs); got != "accepted,attempt,first_token,done" || other {
			t.Fatalf("%s: stages %q (other comments %v)\n%s", v, got, other, body)
		}
		if evs[1].Target != "oa/gpt-4o" || evs[1].Attempt != 1 || evs[3].Usage == nil {
			t.Fatalf("events %+v", evs)
		}
		if bytes.Contains(body, []byte("secret prompt")) || bytes.Contains(body, []byte("sk-provider")) {
			t.Fatalf("body leaks the prompt or key:\n%s", body)
		}
		// done comes before the final frame.
		if d, end := bytes.Index(body, []byte(`"stage":"done"`)), bytes.Index(body, []byte("data: [DONE]")); d < 0 || end < d {
			t.Fatalf("done at %d, [DONE] at %d", d, end)
		}
	}

	// The official SDK reads the same stream unchanged.
	c := openai.NewClient(ooption.WithBaseURL(gw.URL+"/v1/"), ooption.WithAPIKey(gatewayKey), ooption.WithMaxRetries(0),
		ooption.WithHeader("X-OmniRoute-Progress", "true"))
	var plain string
	for _, progress := range []bool{false, true} {
		opts := []ooption.RequestOption{}
		if !progress {
			opts = append(opts, ooption.WithHeaderDel("X-OmniRoute-Progress"))
		}
		var hdr *http.Response
		opts = append(opts, ooption.WithResponseInto(&hdr))
		s := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model: "oa/gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}, opts...)
		var text string
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				text += ch.Choices[0].Delta.Content
			}
		}
		if s.Err() != nil || text == "" {
			t.Fatalf("progress %v: %v %q", progress, s.Err(), text)
		}
		if progress != (hdr.Header.Get("X-OmniRoute-Progress") == "enabled") {
			t.Fatalf("progress %v: header %q", progress, hdr.Header.Get("X-OmniRoute-Progress"))
		}
		if !progress {
			plain = text
		} else if text != plain {
			t.Fatalf("with progress %q, without %q", text, plain)
		}
	}
}

func TestProgressAnthropicSDK(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "anthropic/testdata/responses/text.json", "anthropic/testdata/streams/text.sse"))
	gw := progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "claude", Type: "anthropic", BaseURL: up.URL, APIKeys: []config.Secret{"sk-ant"}}}}, time.Hour)
	c := anthropicClient(gw)
	params := asdk.MessageNewParams{Model: "claude/claude-sonnet-4-5", MaxTokens: 64,
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}}
	var texts [2]string
	for i, progress := range []bool{false, true} {
		var hdr *http.Response
		opts := []option.RequestOption{option.WithResponseInto(&hdr)}
		if progress {
			opts = append(opts, option.WithHeader("X-OmniRoute-Progress", "true"))
		}
		s := c.Messages.NewStreaming(context.Background(), params, opts...)
		var msg asdk.Message
		for s.Next() {
			if err := msg.Accumulate(s.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if s.Err() != nil || len(msg.Content) == 0 || msg.StopReason == "" {
			t.Fatalf("progress %v: %v %+v", progress, s.Err(), msg)
		}
		texts[i] = msg.Content[0].Text
		if progress != (hdr.Header.Get("X-OmniRoute-Progress") == "enabled") {
			t.Fatalf("progress %v: header %q", progress, hdr.Header.Get("X-OmniRoute-Progress"))
		}
	}
	if texts[0] == "" || texts[0] != texts[1] {
		t.Fatalf("texts %q", texts)
	}
	resp := progressPost(t, context.Background(), gw.URL+"/v1/messages",
		`{"model":"claude/claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, "X-OmniRoute-Progress", "true")
	evs, _ := progressLines(t, readAll(t, resp))
	if got := stages(evs); got != "accepted,attempt,first_token,done" {
		t.Fatalf("stages %q", got)
	}
}

func TestProgressFallback(t *testing.T) {
	bad := newUpstream(t, replyStatus(500, `{"error":{"message":"upstream secret detail","type":"server_error"}}`))
	good := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := progressGateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "a", Type: "openai", BaseURL: bad.URL, APIKeys: []config.Secret{"ka"}},
			{ID: "b", Type: "openai", BaseURL: good.URL, APIKeys: []config.Secret{"kb"}},
		},
		Combos: []config.RouteCombo{{Name: "both", Strategy: "priority", Targets: []string{"a/m1", "b/m2"}}},
	}, time.Hour)
	resp := progressPost(t, context.Background(), gw.URL+"/v1/chat/completions",
		`{"model":"both","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "X-OmniRoute-Progress", "true")
	body := readAll(t, resp)
	evs, _ := progressLines(t, body)
	if got := stages(evs); got != "accepted,attempt,retry,attempt,first_token,done" {
		t.Fatalf("stages %q\n%s", got, body)
	}
	if evs[1].Target != "a/m1" || evs[1].Attempt != 1 || evs[2].Status != 500 || evs[2].Attempt != 1 ||
		evs[3].Target != "b/m2" || evs[3].Attempt != 2 {
		t.Fatalf("events %+v", evs)
	}
	if bytes.Contains(body, []byte("upstream secret detail")) {
		t.Fatalf("a progress line carries the upstream error body:\n%s", body)
	}
	if !bytes.Contains(body, []byte("data: [DONE]")) {
		t.Fatalf("no final frame:\n%s", body)
	}

	// Every target failing: the 200 has started, the error is in-stream.
	gw = progressGateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{{ID: "a", Type: "openai", BaseURL: bad.URL, APIKeys: []config.Secret{"ka"}}},
	}, time.Hour)
	resp = progressPost(t, context.Background(), gw.URL+"/v1/chat/completions",
		`{"model":"a/m1","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "X-OmniRoute-Progress", "true")
	body = readAll(t, resp)
	evs, _ = progressLines(t, body)
	if got := stages(evs); resp.StatusCode != 200 || !strings.HasPrefix(got, "accepted,attempt,retry") || strings.Contains(got, "done") ||
		!bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("failure: %d %q\n%s", resp.StatusCode, got, body)
	}
}

func TestProgressHeartbeat(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	sse := fixture(t, "openai/testdata/text.sse")
	slow := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		select { // the first byte only once released (or the gateway left)
		case <-release:
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(sse)
	})
	gw := progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: slow.URL, APIKeys: []config.Secret{"k"}}}}, 20*time.Millisecond)

	// Waiting lines arrive while the upstream is silent, then the answer.
	resp := progressPost(t, context.Background(), gw.URL+"/v1/chat/completions", chatStream, "X-OmniRoute-Progress", "true")
	br := bufio.NewReader(resp.Body)
	var head bytes.Buffer
	for waiting := 0; waiting < 2; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		head.WriteString(line)
		if strings.Contains(line, `"stage":"waiting"`) {
			waiting++
		}
	}
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	evs, _ := progressLines(t, append(head.Bytes(), rest...))
	got := stages(evs)
	if !strings.HasPrefix(got, "accepted,attempt,waiting,waiting") || !strings.HasSuffix(got, "first_token,done") {
		t.Fatalf("stages %q", got)
	}

	// A client leaving mid-wait leaves no goroutine behind.
	release2 := make(chan struct{})
	defer close(release2)
	silent := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		select {
		case <-release2:
		case <-time.After(10 * time.Second):
		}
	})
	gw = progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: silent.URL, APIKeys: []config.Secret{"k"}}}}, 20*time.Millisecond)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	resp = progressPost(t, ctx, gw.URL+"/v1/chat/completions", chatStream, "X-OmniRoute-Progress", "true")
	br = bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"stage":"waiting"`) {
			break
		}
	}
	cancel()
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The upstream handler itself waits for release2; allow it and
		// its connection's goroutines.
		n := runtime.NumGoroutine()
		if n <= before+4 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProgressOffIsUnchanged(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}}, time.Millisecond)
	for _, c := range []struct {
		name, path, body string
		hdr              []string
	}{
		{"no header", "/v1/chat/completions", chatStream, nil},
		{"header false", "/v1/chat/completions", chatStream, []string{"X-OmniRoute-Progress", "false"}},
		{"not streaming", "/v1/chat/completions", `{"model":"oa/gpt-4o","messages":[{"role":"user","content":"hi"}]}`, []string{"X-OmniRoute-Progress", "true"}},
		{"ollama ndjson", "/api/chat", `{"model":"oa/gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, []string{"X-OmniRoute-Progress", "true"}},
		{"gemini json array", "/v1beta/models/oa/gpt-4o:streamGenerateContent", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, []string{"X-OmniRoute-Progress", "true"}},
	} {
		resp := progressPost(t, context.Background(), gw.URL+c.path, c.body, c.hdr...)
		body := readAll(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("X-OmniRoute-Progress") != "" {
			t.Fatalf("%s: %d, header %q\n%s", c.name, resp.StatusCode, resp.Header.Get("X-OmniRoute-Progress"), body)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, ":") || strings.Contains(line, "omniroute-progress") {
				t.Fatalf("%s: comment line %q", c.name, line)
			}
		}
	}
	// Byte-identical: the stream with the header, its progress lines
	// taken out, is the stream without it (the SSE frames are equal
	// save their per-response id and time).
	plain := readAll(t, progressPost(t, context.Background(), gw.URL+"/v1/chat/completions", chatStream))
	withP := readAll(t, progressPost(t, context.Background(), gw.URL+"/v1/chat/completions", chatStream, "X-OmniRoute-Progress", "true"))
	var kept []string
	for _, frame := range strings.Split(string(withP), "\n\n") {
		if !strings.HasPrefix(frame, ": omniroute-progress ") {
			kept = append(kept, frame)
		}
	}
	if got := strings.Join(kept, "\n\n"); normalizeIDs(got) != normalizeIDs(string(plain)) {
		t.Fatalf("with progress, less its lines:\n%s\nwithout:\n%s", got, plain)
	}
}

// normalizeIDs blanks the chunk ids and times, which differ per response.
func normalizeIDs(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "data: {"); ok {
			var m map[string]any
			if json.Unmarshal([]byte("{"+rest), &m) == nil {
				delete(m, "id")
				delete(m, "created")
				b, _ := json.Marshal(m)
				line = "data: " + string(b)
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestProgressResponsesAndGeminiSSE(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := progressGateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}}, time.Hour)
	for _, c := range []struct{ path, body string }{
		{"/v1/responses", `{"model":"oa/gpt-4o","stream":true,"store":false,"input":"hi"}`},
		{"/v1beta/models/oa/gpt-4o:streamGenerateContent?alt=sse", `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`},
	} {
		resp := progressPost(t, context.Background(), gw.URL+c.path, c.body, "X-OmniRoute-Progress", "true")
		body := readAll(t, resp)
		evs, _ := progressLines(t, body)
		if got := stages(evs); resp.Header.Get("X-OmniRoute-Progress") != "enabled" || got != "accepted,attempt,first_token,done" {
			t.Fatalf("%s: header %q, stages %q\n%s", c.path, resp.Header.Get("X-OmniRoute-Progress"), got, body)
		}
	}
}
