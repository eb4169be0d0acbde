package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/omniedge/omni/internal/platform/config"
)

// When every target fails the client gets the last error, in its own
// dialect, with the list of attempts beside it.
func TestExhaustedErrorListsAttempts(t *testing.T) {
	a := newUpstream(t, replyStatus(503, `{"error":{"message":"overloaded","type":"server_error"}}`))
	b := newUpstream(t, replyStatus(429, `{"error":{"message":"slow down","type":"rate_limit_error"}}`))
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "a", Type: "openai", BaseURL: a.URL, APIKeys: []config.Secret{"ka"}},
			{ID: "b", Type: "openai", BaseURL: b.URL, APIKeys: []config.Secret{"kb"}},
		},
		Combos: []config.RouteCombo{{Name: "both", Strategy: "priority", Targets: []string{"a/m1", "b/m2"}}},
	})
	for _, c := range []struct{ path, body, errField string }{
		{"/v1/chat/completions", `{"model":"both","messages":[{"role":"user","content":"hi"}]}`, "message"},
		{"/v1/messages", `{"model":"both","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "message"},
	} {
		req, _ := http.NewRequest("POST", gw.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error    map[string]any `json:"error"`
			Attempts []struct {
				Target     string `json:"target"`
				Connection string `json:"connection"`
				Status     int    `json:"status"`
			} `json:"attempts"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 429 || !strings.Contains(body.Error[c.errField].(string), "slow down") {
			t.Fatalf("%s: last error: %d %v", c.path, resp.StatusCode, body.Error)
		}
		if len(body.Attempts) != 2 || body.Attempts[0].Target != "a/m1" || body.Attempts[0].Status != 503 ||
			body.Attempts[1].Target != "b/m2" || body.Attempts[1].Status != 429 || body.Attempts[1].Connection != "b#1" {
			t.Fatalf("%s: attempts %+v", c.path, body.Attempts)
		}
	}
}

// Parameter rules from the configuration reach the upstream request:
// the model's rejected parameters are dropped, the rest kept.
func TestConfiguredParamRules(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "ds", Type: "openai-compatible", BaseURL: up.URL,
		ParamRules: []config.RouteParamRule{{Model: "deepseek-reasoner", Drop: []string{"temperature", "presence_penalty"}}}}}})
	for _, c := range []struct {
		model    string
		keepTemp bool
	}{{"ds/deepseek-reasoner", false}, {"ds/deepseek-chat", true}} {
		body := `{"model":"` + c.model + `","temperature":0.3,"presence_penalty":0.5,"top_p":0.9,"messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequest("POST", gw.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", c.model, resp.StatusCode)
		}
		sent := up.bodies[len(up.bodies)-1]
		_, hasTemp := sent["temperature"]
		_, hasPP := sent["presence_penalty"]
		if hasTemp != c.keepTemp || hasPP != c.keepTemp || sent["top_p"] != 0.9 {
			t.Fatalf("%s: upstream got %v", c.model, sent)
		}
	}
}

// /v1/models lists every kind; GET /v1/embeddings only embedding models.
func TestModelKinds(t *testing.T) {
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: "http://127.0.0.1:1",
		Models: []string{"gpt-4o", "text-embedding-3-small", "gpt-image-1"}}}})
	list := func(path string) map[string]string {
		req, _ := http.NewRequest("GET", gw.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Object string `json:"object"`
			Data   []struct{ ID, Type string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Object != "list" {
			t.Fatalf("%s: %v %+v", path, err, out)
		}
		m := map[string]string{}
		for _, d := range out.Data {
			m[d.ID] = d.Type
		}
		return m
	}
	all := list("/v1/models")
	if all["oa/gpt-4o"] != "chat" || all["oa/text-embedding-3-small"] != "embedding" || all["oa/gpt-image-1"] != "image" {
		t.Fatalf("/v1/models: %v", all)
	}
	emb := list("/v1/embeddings")
	if len(emb) != 1 || emb["oa/text-embedding-3-small"] != "embedding" {
		t.Fatalf("GET /v1/embeddings: %v", emb)
	}
}

// A provider that does not answer within its timeout is left for the next
// combo target, streaming or not; a stream that has started is not cut by
// the timeout.
func TestTimeoutFallsBack(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	slow := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	good := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	slowStream := newUpstream(t, func(w http.ResponseWriter, _ map[string]any, _ int) {
		// The first event at once, the rest after the timeout.
		w.Header().Set("Content-Type", "text/event-stream")
		sse := fixture(t, "openai/testdata/text.sse")
		cut := bytes.Index(sse, []byte("\n\n")) + 2
		w.Write(sse[:cut])
		w.(http.Flusher).Flush()
		time.Sleep(600 * time.Millisecond)
		w.Write(sse[cut:])
	})
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "slow", Type: "openai", BaseURL: slow.URL, APIKeys: []config.Secret{"k1"}, Timeout: 300 * time.Millisecond},
			{ID: "good", Type: "openai", BaseURL: good.URL, APIKeys: []config.Secret{"k2"}},
			{ID: "trickle", Type: "openai", BaseURL: slowStream.URL, APIKeys: []config.Secret{"k3"}, Timeout: 300 * time.Millisecond},
		},
		Combos: []config.RouteCombo{{Name: "c", Strategy: "priority", Targets: []string{"slow/m", "good/m"}}},
	})
	c := openAIClient(gw.URL)
	ctx := context.Background()
	start := time.Now()
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "c", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if err != nil || resp.Choices[0].Message.Content == "" || good.calls() != 1 || slow.calls() != 1 {
		t.Fatalf("non-streaming: %v %+v (good %d, slow %d)", err, resp, good.calls(), slow.calls())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("fallback took %s", el)
	}
	s := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "c", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var text string
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			text += ch.Choices[0].Delta.Content
		}
	}
	if s.Err() != nil || text == "" || good.calls() != 2 {
		t.Fatalf("streaming: %v %q (good %d)", s.Err(), text, good.calls())
	}
	// Started in time: the slow rest of the stream still arrives whole.
	s = c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "trickle/m", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var whole string
	for s.Next() {
		if ch := s.Current(); len(ch.Choices) > 0 {
			whole += ch.Choices[0].Delta.Content
		}
	}
	if s.Err() != nil || whole != text {
		t.Fatalf("a stream that started in time was cut: %v %q, want %q", s.Err(), whole, text)
	}
}
