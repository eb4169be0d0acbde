package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
