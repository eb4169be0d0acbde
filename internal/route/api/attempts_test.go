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
