package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// endpoint is a webhook receiver that verifies every message with the
// Standard Webhooks library (signature and timestamp) before taking it.
type endpoint struct {
	t      *testing.T
	url    string
	mu     sync.Mutex
	wh     *standardwebhooks.Webhook
	events []map[string]any
	bad    int
}

func newEndpoint(t *testing.T) *endpoint {
	ep := &endpoint{t: t}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ep.mu.Lock()
		defer ep.mu.Unlock()
		if ep.wh == nil || ep.wh.Verify(body, r.Header) != nil {
			ep.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		ep.events = append(ep.events, ev)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ep.url = srv.URL
	return ep
}

func (ep *endpoint) secret(s string) {
	wh, err := standardwebhooks.NewWebhook(s)
	if err != nil {
		ep.t.Fatal(err)
	}
	ep.mu.Lock()
	ep.wh = wh
	ep.mu.Unlock()
}

func (ep *endpoint) ofType(typ string) []map[string]any {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var out []map[string]any
	for _, e := range ep.events {
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// The whole gateway: a webhook subscribed to key.created and
// batch.completed receives both, signed as the Standard Webhooks library
// verifies; the test endpoint answers the delivery's status.
func TestEventsReachASignedEndpoint(t *testing.T) {
	e := admintest.Running(t, nil)
	ep := newEndpoint(t)
	hook := e.Want(http.StatusCreated, "POST", "/api/webhooks", map[string]any{"url": ep.url + "/in",
		"events": []string{"key.created", "batch.completed"}, "description": "ops"}).Object(t)
	secret := hook["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	ep.secret(secret)
	id := hook["id"].(string)

	// The test endpoint sends webhook.test at once.
	res := e.Want(http.StatusOK, "POST", "/api/webhooks/"+id+"/test", nil).Object(t)
	if res["delivered"] != true || res["status"] != 200.0 || len(ep.ofType("webhook.test")) != 1 {
		t.Fatalf("test: %v, events %v", res, ep.events)
	}

	keyID, raw := e.CreateKey(map[string]any{"name": "ci"})
	testenv.Eventually(t, "key.created", func() bool { return len(ep.ofType("key.created")) == 1 })
	data := ep.ofType("key.created")[0]["data"].(map[string]any)
	if data["id"] != keyID || data["name"] != "ci" || strings.Contains(string(mustJSON(data)), raw) {
		t.Fatalf("key.created data %v", data)
	}

	up := admintest.NewUpstream(t, "up")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-up"})
	c := openai.NewClient(ooption.WithBaseURL(e.Srv.URL+"/v1/"), ooption.WithAPIKey(raw), ooption.WithMaxRetries(0))
	ctx := context.Background()
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(strings.NewReader(
		`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"p/m","messages":[{"role":"user","content":"hi"}]}}`+"\n"),
		"in.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyWithin(t, "batch.completed", 60*time.Second, func() bool { return len(ep.ofType("batch.completed")) == 1 })
	bd := ep.ofType("batch.completed")[0]["data"].(map[string]any)
	if bd["id"] != b.ID || bd["status"] != "completed" || bd["completed"] != 1.0 || bd["keyId"] != keyID {
		t.Fatalf("batch.completed data %v", bd)
	}
	ep.mu.Lock()
	bad := ep.bad
	ep.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d messages failed verification", bad)
	}
	// Not subscribed: no key.revoked.
	e.Want(http.StatusNoContent, "DELETE", "/api/keys/"+keyID, nil)
	time.Sleep(300 * time.Millisecond) // three writer batches: nothing may come
	if n := len(ep.ofType("key.revoked")); n != 0 {
		t.Fatalf("%d key.revoked events for a webhook not subscribed to them", n)
	}
	testenv.Eventually(t, "the newest delivery recorded as delivered", func() bool {
		ds := e.Want(http.StatusOK, "GET", "/api/webhooks/"+id+"/deliveries?limit=1", nil).Object(t)
		list := ds["data"].([]any)
		return len(list) == 1 && ds["hasMore"] == true && list[0].(map[string]any)["status"] == "delivered"
	})
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// The API: defaults, validation (400 with a JSON error), the secret shown
// in full once and masked after, updates, the caps, deletion.
func TestWebhookAPI(t *testing.T) {
	e := admintest.Running(t, nil)
	for _, bad := range []map[string]any{
		{"url": "ftp://example.com/x"},
		{"url": "http:///nohost"},
		{"url": "not a url"},
		{"url": "https://example.com/" + strings.Repeat("a", 2100)},
		{},
		{"url": "https://example.com", "events": []string{"key.created", "key.exploded"}},
		{"url": "https://example.com", "events": []string{}},
		{"url": "https://example.com", "secret": "plain"},
		{"url": "https://example.com", "secret": "whsec_c2hvcnQ="},
		{"url": "https://example.com", "description": strings.Repeat("d", 501)},
		{"url": "https://example.com", "events": "key.created"},
	} {
		e.WantError(http.StatusBadRequest, "POST", "/api/webhooks", bad)
	}
	h := e.Want(http.StatusCreated, "POST", "/api/webhooks", map[string]any{"url": "https://hooks.example.com/omni"}).Object(t)
	secret, id := h["secret"].(string), h["id"].(string)
	if evs := h["events"].([]any); len(evs) != 1 || evs[0] != "*" || len(secret) < 40 {
		t.Fatalf("created %v", h)
	}
	masked := secret[:10] + "..."
	list := e.Want(http.StatusOK, "GET", "/api/webhooks", nil)
	if strings.Contains(string(list.Body), secret) || !strings.Contains(string(list.Body), masked) {
		t.Fatalf("list shows %s", list.Body)
	}
	one := e.Want(http.StatusOK, "GET", "/api/webhooks/"+id, nil).Object(t)
	if one["secret"] != masked || one["url"] != "https://hooks.example.com/omni" {
		t.Fatalf("get %v", one)
	}
	own := "whsec_" + strings.Repeat("QUJD", 8) // 24 bytes
	up := e.Want(http.StatusOK, "PUT", "/api/webhooks/"+id, map[string]any{"events": []string{"budget.exceeded", "budget.warning"}, "secret": own}).Object(t)
	if up["secret"] != own || len(up["events"].([]any)) != 2 || up["url"] != "https://hooks.example.com/omni" {
		t.Fatalf("put %v", up)
	}
	e.WantError(http.StatusBadRequest, "PUT", "/api/webhooks/"+id, map[string]any{"url": "javascript:alert(1)"})
	e.WantError(http.StatusNotFound, "PUT", "/api/webhooks/wh_none", map[string]any{"description": "x"})
	e.WantError(http.StatusNotFound, "POST", "/api/webhooks/wh_none/test", nil)
	e.WantError(http.StatusBadRequest, "GET", "/api/webhooks/"+id+"/deliveries?limit=1000", nil)
	e.Want(http.StatusNoContent, "DELETE", "/api/webhooks/"+id, nil)
	e.WantError(http.StatusNotFound, "GET", "/api/webhooks/"+id, nil)
	for range 100 {
		e.Want(http.StatusCreated, "POST", "/api/webhooks", map[string]any{"url": "https://hooks.example.com/omni"})
	}
	e.WantError(http.StatusConflict, "POST", "/api/webhooks", map[string]any{"url": "https://hooks.example.com/omni"})
}

// Who may not: an anonymous client, a gateway key's holder, and a web
// page of another site in the operator's (logged-in) browser.
func TestWebhookAttackers(t *testing.T) {
	e := admintest.Running(t, nil)
	_, raw := e.CreateKey(map[string]any{"name": "k"})
	anon := &http.Client{}
	for _, c := range []struct {
		client *http.Client
		hdr    []string
		want   int
	}{
		{anon, nil, http.StatusUnauthorized},
		{anon, []string{"Authorization", "Bearer " + raw}, http.StatusForbidden}, // no manage scope
		{e.C, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
	} {
		for _, m := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(m, e.Srv.URL+"/api/webhooks", strings.NewReader(`{"url":"https://evil.example/x"}`))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i < len(c.hdr); i += 2 {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s with %v: %d, want %d", m, c.hdr, resp.StatusCode, c.want)
			}
		}
	}
	if n := len(e.Want(http.StatusOK, "GET", "/api/webhooks", nil).Object(t)["data"].([]any)); n != 0 {
		t.Fatalf("%d webhooks created by the attackers", n)
	}
}

// The emitters through the whole gateway: failed requests, the breaker
// that five failures in a row open (and the provider down with it), the
// breaker closing on the next success, a budget's warning and its
// refusal; each on a webhook subscribed to "*".
func TestGatewayEmitters(t *testing.T) {
	e := admintest.Running(t, nil)
	ep := newEndpoint(t)
	ep.secret(e.Want(http.StatusCreated, "POST", "/api/webhooks", map[string]any{"url": ep.url}).Object(t)["secret"].(string))
	up := admintest.NewUpstream(t, "up")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-up"})
	keyID, raw := e.CreateKey(map[string]any{"name": "spender"})
	bearer := []string{"Authorization", "Bearer " + raw}

	e.Want(http.StatusOK, "PATCH", "/api/resilience", map[string]any{"breaker_cooloff_ms": 100})
	up.SetStatus(http.StatusInternalServerError)
	for range 5 {
		if r := e.Do("POST", "/v1/chat/completions", admintest.Chat("p/m"), bearer...); r.Status < 500 {
			t.Fatalf("chat to a failing upstream: %d", r.Status)
		}
	}
	testenv.Eventually(t, "request.failed ×5, breaker.opened, provider.down", func() bool {
		return len(ep.ofType("request.failed")) == 5 && len(ep.ofType("breaker.opened")) == 1 && len(ep.ofType("provider.down")) == 1
	})
	rf := ep.ofType("request.failed")[0]["data"].(map[string]any)
	if rf["keyId"] != keyID || rf["model"] != "p/m" || rf["endpoint"] != "/v1/chat/completions" || rf["status"].(float64) < 500 {
		t.Fatalf("request.failed data %v", rf)
	}
	if d := ep.ofType("provider.down")[0]["data"].(map[string]any); d["provider"] != "p" || d["failures"] != 5.0 {
		t.Fatalf("provider.down data %v", d)
	}
	up.SetStatus(http.StatusOK)
	testenv.Eventually(t, "a chat once the breaker cooled off", func() bool {
		return e.Do("POST", "/v1/chat/completions", admintest.Chat("p/m"), bearer...).Status == http.StatusOK
	})
	testenv.Eventually(t, "breaker.closed", func() bool { return len(ep.ofType("breaker.closed")) == 1 })
	if d := ep.ofType("breaker.closed")[0]["data"].(map[string]any); d["provider"] != "p" || d["state"] != "closed" {
		t.Fatalf("breaker.closed data %v", d)
	}

	// $1000 per million tokens: each answer (5 tokens) costs $0.005.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "p/m", "input": 1000, "output": 1000})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": keyID, "dailyLimitUsd": 0.008, "warningThreshold": 0.5})
	refused := false
	for range 5 {
		r := e.Do("POST", "/v1/chat/completions", map[string]any{"model": "p/m", "max_tokens": 2,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}, bearer...)
		if r.Status == http.StatusTooManyRequests {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("the budget never refused")
	}
	testenv.Eventually(t, "budget.warning and budget.exceeded", func() bool {
		return len(ep.ofType("budget.warning")) == 1 && len(ep.ofType("budget.exceeded")) == 1
	})
	if d := ep.ofType("budget.exceeded")[0]["data"].(map[string]any); d["keyId"] != keyID || d["period"] != "daily" || d["limitUsd"] != 0.008 {
		t.Fatalf("budget.exceeded data %v", d)
	}
}
