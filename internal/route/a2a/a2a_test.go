package a2a_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/store"
)

// gateway is a whole gateway with the A2A server enabled, an OpenAI
// provider "p" (models coder-1 and general-1) at a fake upstream, and two
// gateway keys; the second may use only p/general-1.
type gateway struct {
	*admintest.Env
	up      *admintest.Upstream
	st      *store.Store
	id1, k1 string
	id2, k2 string
}

func openGateway(t *testing.T) *gateway {
	e := admintest.Running(t, nil)
	g := &gateway{Env: e, up: admintest.NewUpstream(t, "up")}
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": g.up.URL,
		"api_key": "sk-p-upstream-key", "models": []string{"coder-1", "general-1"}})
	g.id1, g.k1 = e.CreateKey(map[string]any{"name": "one"})
	g.id2, g.k2 = e.CreateKey(map[string]any{"name": "two", "allowed_models": []string{"p/general-1"}, "rpm": 7})
	st, err := store.New(context.Background(), e.DB, admintest.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	g.st = st
	g.enable(true)
	return g
}

func (g *gateway) enable(on bool) {
	g.T.Helper()
	v := "false"
	if on {
		v = "true"
	}
	if err := g.st.SetSetting(context.Background(), "a2a_enabled", v); err != nil {
		g.T.Fatal(err)
	}
}

// rpcResp is a JSON-RPC response.
type rpcResp struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call sends body (a value or a raw string) to POST /a2a with key ("" none)
// and wants HTTP status.
func (g *gateway) call(status int, key string, body any, hdr ...string) rpcResp {
	g.T.Helper()
	if key != "" {
		hdr = append(hdr, admintest.Bearer(key)...)
	}
	r := g.Want(status, "POST", "/a2a", body, hdr...)
	var out rpcResp
	if err := json.Unmarshal(r.Body, &out); err != nil || out.JSONRPC != "2.0" {
		g.T.Fatalf("answer %s is not a JSON-RPC response", r.Body)
	}
	return out
}

func (g *gateway) wantError(key string, body any, code int) rpcResp {
	g.T.Helper()
	r := g.call(http.StatusOK, key, body)
	if r.Error == nil || r.Error.Code != code || r.Error.Message == "" || len(r.Result) != 0 {
		g.T.Fatalf("answer %+v (result %s), want error %d", r.Error, r.Result, code)
	}
	return r
}

func req(method string, params any) map[string]any {
	return map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
}

// send is message/send's request with an A2A message of text and data
// (nil: none).
func send(text string, data map[string]any) map[string]any {
	parts := []map[string]any{{"kind": "text", "text": text}}
	if data != nil {
		parts = append(parts, map[string]any{"kind": "data", "data": data})
	}
	return req("message/send", map[string]any{"message": map[string]any{"kind": "message", "role": "user", "messageId": "m1", "parts": parts}})
}

// task is a task as a client reads it.
type task struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Status struct {
		State   string `json:"state"`
		Message *struct {
			Parts []struct {
				Text string `json:"text"`
			} `json:"parts"`
		} `json:"message"`
	} `json:"status"`
	Artifacts []struct {
		Name  string `json:"name"`
		Parts []struct {
			Kind string          `json:"kind"`
			Text string          `json:"text"`
			Data json.RawMessage `json:"data"`
		} `json:"parts"`
	} `json:"artifacts"`
	Metadata map[string]any `json:"metadata"`
}

func (t task) statusText() string {
	if t.Status.Message == nil || len(t.Status.Message.Parts) == 0 {
		return ""
	}
	return t.Status.Message.Parts[0].Text
}

// artifact decodes the data part of the artifact named name into v.
func (t task) artifact(tb testing.TB, name string, v any) {
	tb.Helper()
	for _, a := range t.Artifacts {
		if a.Name != name {
			continue
		}
		for _, p := range a.Parts {
			if p.Kind == "data" {
				if err := json.Unmarshal(p.Data, v); err != nil {
					tb.Fatal(err)
				}
				return
			}
		}
	}
	tb.Fatalf("task %s has no data artifact %q: %+v", t.ID, name, t.Artifacts)
}

func (g *gateway) task(key string, body any) task {
	g.T.Helper()
	r := g.call(http.StatusOK, key, body)
	if r.Error != nil {
		g.T.Fatalf("error %+v", r.Error)
	}
	var t task
	if err := json.Unmarshal(r.Result, &t); err != nil || t.Kind != "task" || t.ID == "" {
		g.T.Fatalf("result %s is not a task", r.Result)
	}
	return t
}

func (g *gateway) completed(key string, body any) task {
	g.T.Helper()
	t := g.task(key, body)
	if t.Status.State != "completed" {
		g.T.Fatalf("task %s: %s (%s)", t.ID, t.Status.State, t.statusText())
	}
	return t
}

// The agent card is public, cached for an hour, and names the endpoint,
// streaming, the five skills and the bearer scheme.
func TestAgentCard(t *testing.T) {
	g := openGateway(t)
	g.enable(false) // the card does not depend on the setting
	r := routeGet(t, g.Srv.URL+"/.well-known/agent.json")
	if r.StatusCode != http.StatusOK || r.Header.Get("Cache-Control") != "public, max-age=3600" ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("card: %d %v", r.StatusCode, r.Header)
	}
	var c struct {
		Name, Description, URL, Version, ProtocolVersion string
		Capabilities                                     struct{ Streaming bool }
		Skills                                           []struct{ ID, Name, Description string }
		SecuritySchemes                                  map[string]struct{ Type, Scheme string }
		Security                                         []map[string][]string
	}
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if c.Name != "OmniRoute" || c.Description == "" || c.URL != g.Srv.URL+"/a2a" || c.Version == "" || c.ProtocolVersion != "0.3.0" ||
		!c.Capabilities.Streaming || c.SecuritySchemes["bearer"].Scheme != "bearer" || c.SecuritySchemes["bearer"].Type != "http" ||
		len(c.Security) != 1 {
		t.Fatalf("card %+v", c)
	}
	var ids []string
	for _, s := range c.Skills {
		if s.Name == "" || s.Description == "" {
			t.Errorf("skill %+v undescribed", s)
		}
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "smart-routing,quota-management,provider-discovery,cost-analysis,health-report" {
		t.Fatalf("skills %v", ids)
	}
}

func routeGet(t *testing.T, url string) *http.Response {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// While a2a_enabled is not "true" (unset, or "false") every call is a
// JSON-RPC error with HTTP 503, and nothing runs.
func TestDisabled(t *testing.T) {
	g := openGateway(t)
	for _, v := range []string{"unset", "false"} {
		if v == "unset" {
			if _, err := g.DB.Exec(context.Background(), `DELETE FROM route_settings WHERE key = 'a2a_enabled'`); err != nil {
				t.Fatal(err)
			}
		} else {
			g.enable(false)
		}
		r := g.call(http.StatusServiceUnavailable, g.k1, send("Route this coding task", map[string]any{"execute": true}))
		if r.Error == nil || r.Error.Code != -32000 || !strings.Contains(r.Error.Message, "disabled") {
			t.Fatalf("%s: %+v", v, r.Error)
		}
	}
	if _, models := g.up.Calls(); len(models) != 0 {
		t.Fatalf("the upstream was called: %v", models)
	}
	g.enable(true) // read per request: on at once
	g.completed(g.k1, send("Which providers are available?", nil))
}

// Malformed JSON-RPC gets the protocol's codes with HTTP 200; the id is
// echoed when it could be read.
func TestMalformedRequests(t *testing.T) {
	g := openGateway(t)
	cases := []struct {
		name string
		body string
		code int
		id   string
	}{
		{"not json", `{"jsonrpc": "2.0", "id": 1,`, -32700, "null"},
		{"empty", ` `, -32700, "null"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}]`, -32600, "null"},
		{"not an object", `"hello"`, -32600, "null"},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"tasks/get"}`, -32600, "1"},
		{"no id", `{"jsonrpc":"2.0","method":"tasks/get","params":{"id":"x"}}`, -32600, "null"},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"tasks/get"}`, -32600, "null"},
		{"method not a string", `{"jsonrpc":"2.0","id":"a","method":5}`, -32600, `"a"`},
		{"unknown method", `{"jsonrpc":"2.0","id":"a","method":"tasks/resubscribe"}`, -32601, `"a"`},
		{"params array", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":[1]}`, -32602, "2"},
		{"get without id", `{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{}}`, -32602, "2"},
		{"cancel without params", `{"jsonrpc":"2.0","id":2,"method":"tasks/cancel"}`, -32602, "2"},
		{"send without message", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{}}`, -32602, "2"},
		{"no parts", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"role":"user","parts":[]}}}`, -32602, "2"},
		{"agent role", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"role":"agent","parts":[{"kind":"text","text":"x"}]}}}`, -32602, "2"},
		{"data not object", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"role":"user","parts":[{"kind":"data","data":[1]}]}}}`, -32602, "2"},
		{"file part", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"role":"user","parts":[{"kind":"file"}]}}}`, -32005, "2"},
		{"unknown skill", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"skill":"rm-rf","messages":[{"role":"user","content":"x"}]}}`, -32602, "2"},
		{"continued task", `{"jsonrpc":"2.0","id":2,"method":"message/send","params":{"message":{"role":"user","taskId":"t","parts":[{"kind":"text","text":"x"}]}}}`, -32004, "2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := g.wantError(g.k1, c.body, c.code)
			if string(r.ID) != c.id {
				t.Fatalf("id %s, want %s", r.ID, c.id)
			}
		})
	}
	// The body is capped (413) and must be JSON (415): a web page can
	// send neither a large body nor text/plain to run anything.
	big := `{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"messages":[{"content":"` + strings.Repeat("a", 1<<20) + `"}]}}`
	g.Want(http.StatusRequestEntityTooLarge, "POST", "/a2a", big, admintest.Bearer(g.k1)...)
	g.Want(http.StatusUnsupportedMediaType, "POST", "/a2a", []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"skill":"smart-routing","messages":[{"content":"x"}]}}`),
		append(admintest.Bearer(g.k1), "Content-Type", "text/plain")...)
	// Nor can it as the keyless client of the gateway host.
	g.Want(http.StatusUnsupportedMediaType, "POST", "/a2a", []byte(`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"skill":"smart-routing","messages":[{"content":"x"}]}}`),
		"Content-Type", "text/plain")
	if n := g.taskCount(); n != 0 {
		t.Fatalf("%d tasks were made", n)
	}
}

func (g *gateway) taskCount() int {
	g.T.Helper()
	var out struct{ Total int }
	if err := json.Unmarshal(g.Want(http.StatusOK, "GET", "/api/a2a/tasks", nil).Body, &out); err != nil {
		g.T.Fatal(err)
	}
	return out.Total
}

// Without a key from another host, or with a wrong one, /a2a is a 401,
// as /v1 is; a keyless client on the gateway host is served as /v1
// serves it, its tasks its own.
func TestKeys(t *testing.T) {
	g := openGateway(t)
	g.Want(http.StatusUnauthorized, "POST", "/a2a", send("hi", nil), admintest.Remote...)
	g.Want(http.StatusUnauthorized, "POST", "/a2a", send("hi", nil), admintest.Bearer("sk-guessed")...)
	// A web page is no keyless local client: not another site's, nor a
	// rebinding one's (its own host name pointing at the gateway).
	g.Want(http.StatusUnauthorized, "POST", "/a2a", send("hi", nil), "Origin", "https://evil.example")
	g.Want(http.StatusUnauthorized, "POST", "/a2a", send("hi", nil), "Host", "evil.example")
	own := g.completed(g.k1, send("Which providers are available?", nil))
	local := g.completed("", send("Which providers are available?", nil))
	g.wantError("", req("tasks/get", map[string]any{"id": own.ID}), -32001)
	g.wantError(g.k1, req("tasks/get", map[string]any{"id": local.ID}), -32001)
	if got := g.task("", req("tasks/get", map[string]any{"id": local.ID})); got.ID != local.ID {
		t.Fatalf("got %s", got.ID)
	}
}

// smart-routing picks a model the key may use, best matching the task,
// and with execute runs it through the gateway as the key; a hint the
// key's policy refuses fails the task.
func TestSmartRouting(t *testing.T) {
	g := openGateway(t)
	type decision struct {
		Model   string
		Targets []string
		Healthy bool
		Reason  string
	}
	var d decision
	g.completed(g.k1, send("Route this coding task", nil)).artifact(t, "routing-decision", &d)
	if d.Model != "p/coder-1" || len(d.Targets) != 1 || d.Targets[0] != "p/coder-1" || !d.Healthy || d.Reason == "" {
		t.Fatalf("decision %+v", d)
	}
	// The second key may use p/general-1 only.
	d = decision{}
	g.completed(g.k2, send("Route this coding task", nil)).artifact(t, "routing-decision", &d)
	if d.Model != "p/general-1" {
		t.Fatalf("key two got %+v", d)
	}
	tk := g.task(g.k2, send("go", map[string]any{"model": "p/coder-1", "execute": true}))
	if tk.Status.State != "failed" || !strings.Contains(tk.statusText(), "may not use") {
		t.Fatalf("refused hint: %s %q", tk.Status.State, tk.statusText())
	}
	// execute: the chat runs through the gateway with the provider's key.
	tk = g.completed(g.k1, send("Write a sorting function (coding)", map[string]any{"execute": true}))
	var text string
	for _, a := range tk.Artifacts {
		if a.Name == "answer" {
			text = a.Parts[0].Text
		}
	}
	if text != "hi from up" {
		t.Fatalf("artifacts %+v", tk.Artifacts)
	}
	auths, models := g.up.Calls()
	if len(models) != 1 || models[0] != "coder-1" || auths[0] != "Bearer sk-p-upstream-key" {
		t.Fatalf("upstream saw %v %v", auths, models)
	}
	// The OmniRoute short form with a named skill works too.
	g.completed(g.k1, req("message/send", map[string]any{"skill": "smart-routing", "messages": []map[string]string{{"role": "user", "content": "Route this coding task"}}})).
		artifact(t, "routing-decision", &d)
	if d.Model != "p/coder-1" {
		t.Fatalf("short form: %+v", d)
	}
}

// quota-management reports the caller's own policy, limits and budget.
func TestQuotaManagement(t *testing.T) {
	g := openGateway(t)
	g.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": g.id2, "dailyLimitUsd": 5})
	var q struct {
		APIKeyID      string
		Name          string
		AllowedModels []string
		Limits        struct{ RPM int64 }
		Budget        *struct {
			DailyLimitUSD float64 `json:"dailyLimitUsd"`
			RemainingUSD  float64 `json:"remainingUsd"`
		}
	}
	g.completed(g.k2, req("message/send", map[string]any{"skill": "quota-management", "messages": []map[string]string{{"content": "?"}}})).artifact(t, "quota", &q)
	if q.APIKeyID != g.id2 || q.Name != "two" || len(q.AllowedModels) != 1 || q.Limits.RPM != 7 || q.Budget == nil ||
		q.Budget.DailyLimitUSD != 5 || q.Budget.RemainingUSD != 5 {
		t.Fatalf("quota %+v", q)
	}
	q.Budget = nil
	g.completed(g.k1, send("How much budget do I have left?", nil)).artifact(t, "quota", &q)
	if q.APIKeyID != g.id1 || q.Budget != nil || len(q.AllowedModels) != 0 {
		t.Fatalf("key one's quota %+v", q)
	}
}

// provider-discovery shows the providers and the models the key may use.
func TestProviderDiscovery(t *testing.T) {
	g := openGateway(t)
	type out struct {
		Providers []struct {
			ID, Type        string
			Enabled, Active bool
			BaseURL         string `json:"base_url"`
			Models          []struct{ ID, Kind string }
		}
		ModelCount int
	}
	var o out
	tk := g.completed(g.k1, send("Which providers and models are available?", nil))
	tk.artifact(t, "providers", &o)
	if len(o.Providers) != 1 || o.Providers[0].ID != "p" || o.Providers[0].Type != "openai" || !o.Providers[0].Active ||
		len(o.Providers[0].Models) != 2 || o.Providers[0].Models[0].Kind != "chat" || o.ModelCount != 2 {
		t.Fatalf("key one sees %+v", o)
	}
	for _, a := range tk.Artifacts {
		for _, p := range a.Parts {
			if bytes.Contains(p.Data, []byte(g.up.URL)) || bytes.Contains(p.Data, []byte("sk-p-upstream")) {
				t.Fatalf("the provider's address or key is shown: %s", p.Data)
			}
		}
	}
	o = out{}
	g.completed(g.k2, send("Which providers and models are available?", nil)).artifact(t, "providers", &o)
	if len(o.Providers) != 1 || len(o.Providers[0].Models) != 1 || o.Providers[0].Models[0].ID != "p/general-1" {
		t.Fatalf("key two sees %+v", o)
	}
}

// cost-analysis sums the caller's own usage over the window.
func TestCostAnalysis(t *testing.T) {
	g := openGateway(t)
	g.ChatText("p/coder-1", admintest.Bearer(g.k1)...)
	g.ChatText("p/general-1", admintest.Bearer(g.k1)...)
	type cost struct {
		Window string
		Usage  struct {
			Totals  struct{ Requests, InputTokens int64 }
			ByModel []struct {
				Key      string
				Requests int64
			}
		}
	}
	var c cost
	testenv.Eventually(t, "key one's usage recorded", func() bool {
		c = cost{}
		g.completed(g.k1, req("message/send", map[string]any{"skill": "cost-analysis", "messages": []map[string]string{{"content": "cost?"}},
			"metadata": map[string]any{"window": "7d"}})).artifact(t, "cost", &c)
		return c.Usage.Totals.Requests == 2
	})
	if c.Window != "7d" || c.Usage.Totals.InputTokens != 6 || len(c.Usage.ByModel) != 2 {
		t.Fatalf("cost %+v", c)
	}
	c = cost{}
	g.completed(g.k2, send("What did I spend?", nil)).artifact(t, "cost", &c)
	if c.Window != "24h" || c.Usage.Totals.Requests != 0 {
		t.Fatalf("key two sees %+v", c)
	}
	tk := g.task(g.k1, send("What did I spend?", map[string]any{"window": "1y"}))
	if tk.Status.State != "failed" || !strings.Contains(tk.statusText(), "window") {
		t.Fatalf("bad window: %s %q", tk.Status.State, tk.statusText())
	}
}

// health-report shows the providers' state and a failing provider's
// breaker count.
func TestHealthReport(t *testing.T) {
	g := openGateway(t)
	g.up.SetStatus(http.StatusInternalServerError)
	g.Do("POST", "/v1/chat/completions", admintest.Chat("p/coder-1"), admintest.Bearer(g.k1)...)
	var h struct {
		Providers []struct{ ID, Breaker string }
		Breakers  []struct {
			Provider            string
			ConsecutiveFailures int `json:"consecutive_failures"`
		}
	}
	g.completed(g.k1, send("Are any providers down? health", nil)).artifact(t, "health", &h)
	if len(h.Providers) != 1 || h.Providers[0].ID != "p" || h.Providers[0].Breaker != "closed" || len(h.Breakers) != 1 ||
		h.Breakers[0].Provider != "p" || h.Breakers[0].ConsecutiveFailures != 1 {
		t.Fatalf("health %+v", h)
	}
}

// message/stream sends the task, then its status and artifact updates
// in order, the last one final.
func TestStream(t *testing.T) {
	g := openGateway(t)
	body, _ := json.Marshal(req("message/stream", map[string]any{"skill": "smart-routing",
		"message": map[string]any{"role": "user", "messageId": "m", "parts": []map[string]any{{"kind": "text", "text": "coding"}, {"kind": "data", "data": map[string]any{"execute": true}}}}}))
	hr, _ := http.NewRequest("POST", g.Srv.URL+"/a2a", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+g.k1)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var seq []string
	var taskID string
	for _, ev := range readEvents(t, res) {
		var r struct {
			ID     int
			Result struct {
				Kind, ID, TaskID string
				Final            bool
				Status           struct{ State string }
				Artifact         struct{ Name string }
			}
		}
		if err := json.Unmarshal([]byte(ev), &r); err != nil || r.ID != 7 {
			t.Fatalf("event %s", ev)
		}
		switch x := r.Result; x.Kind {
		case "task":
			taskID = x.ID
			seq = append(seq, "task:"+x.Status.State)
		case "status-update":
			seq = append(seq, "status:"+x.Status.State+map[bool]string{true: ":final"}[x.Final])
			if x.TaskID != taskID {
				t.Fatalf("event of task %s, want %s", x.TaskID, taskID)
			}
		case "artifact-update":
			seq = append(seq, "artifact:"+x.Artifact.Name)
		}
	}
	want := "task:submitted status:working artifact:routing-decision artifact:answer status:completed:final"
	if strings.Join(seq, " ") != want {
		t.Fatalf("events %v\nwant %s", seq, want)
	}
	if got := g.task(g.k1, req("tasks/get", map[string]any{"id": taskID})); got.Status.State != "completed" || len(got.Artifacts) != 2 {
		t.Fatalf("tasks/get %+v", got)
	}
}

// readEvents reads an SSE stream's data lines to its end.
func readEvents(t *testing.T, res *http.Response) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// tasks/get and tasks/cancel see only the caller's tasks: another key
// gets "task not found"; a finished task cannot be canceled.
func TestTasksBelongToTheirKey(t *testing.T) {
	g := openGateway(t)
	tk := g.completed(g.k1, send("Which providers are available?", nil))
	got := g.task(g.k1, req("tasks/get", map[string]any{"id": tk.ID}))
	if got.ID != tk.ID || got.Status.State != "completed" || len(got.Artifacts) != 1 || got.Metadata["skill"] != "provider-discovery" {
		t.Fatalf("tasks/get %+v", got)
	}
	g.wantError(g.k2, req("tasks/get", map[string]any{"id": tk.ID}), -32001)
	g.wantError(g.k2, req("tasks/cancel", map[string]any{"id": tk.ID}), -32001)
	g.wantError(g.k1, req("tasks/cancel", map[string]any{"id": tk.ID}), -32002)
	g.wantError(g.k1, req("tasks/get", map[string]any{"id": "task_nope"}), -32001)
}

// tasks/cancel stops a running skill: the chat upstream is abandoned and
// the stream ends with the canceled state.
func TestCancelRunningTask(t *testing.T) {
	g := openGateway(t)
	started, gone := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			http.NotFound(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body) // a server notices the client leaving once the body is read
		select {
		case started <- struct{}{}:
		default:
		}
		<-r.Context().Done()
		once.Do(func() { close(gone) })
	}))
	t.Cleanup(slow.Close)
	g.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "slow", "type": "openai", "base_url": slow.URL,
		"api_key": "sk-slow", "models": []string{"m"}})
	body, _ := json.Marshal(req("message/stream", map[string]any{"message": map[string]any{"role": "user", "messageId": "m",
		"parts": []map[string]any{{"kind": "text", "text": "think hard"}, {"kind": "data", "data": map[string]any{"model": "slow/m", "execute": true}}}}}))
	hr, _ := http.NewRequest("POST", g.Srv.URL+"/a2a", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+g.k1)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	var first struct{ Result struct{ ID string } }
	line, err := rd.ReadString('\n')
	if err != nil || json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &first) != nil || first.Result.ID == "" {
		t.Fatalf("first event %q: %v", line, err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the chat never reached the upstream")
	}
	g.wantError(g.k2, req("tasks/cancel", map[string]any{"id": first.Result.ID}), -32001)
	c := g.task(g.k1, req("tasks/cancel", map[string]any{"id": first.Result.ID}))
	if c.Status.State != "canceled" {
		t.Fatalf("cancel answered %s", c.Status.State)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream call was not abandoned")
	}
	rest := readEvents(t, &http.Response{Body: readCloser{rd}})
	if len(rest) == 0 || !strings.Contains(rest[len(rest)-1], `"state":"canceled"`) || !strings.Contains(rest[len(rest)-1], `"final":true`) {
		t.Fatalf("the stream ended with %v", rest)
	}
	var list struct {
		Tasks []struct {
			ID       string
			APIKeyID string `json:"apiKeyId"`
		}
	}
	if err := json.Unmarshal(g.Want(http.StatusOK, "GET", "/api/a2a/tasks?state=cancelled", nil).Body, &list); err != nil ||
		len(list.Tasks) != 1 || list.Tasks[0].ID != first.Result.ID || list.Tasks[0].APIKeyID != g.id1 {
		t.Fatalf("canceled tasks %+v", list)
	}
}

type readCloser struct{ *bufio.Reader }

func (readCloser) Close() error { return nil }

// The management helpers need the dashboard login and refuse other
// sites' pages; they list, show and cancel every key's tasks.
func TestManagementHelpers(t *testing.T) {
	g := openGateway(t)
	tk := g.completed(g.k1, send("Which providers are available?", nil))
	g.completed(g.k2, send("health", nil))
	var st struct {
		Enabled bool
		Tasks   struct {
			Total   int
			ByState map[string]int
			BySkill map[string]int
		}
		Card struct {
			Name   string
			Skills []string
		}
	}
	if err := json.Unmarshal(g.Want(http.StatusOK, "GET", "/api/a2a/status", nil).Body, &st); err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || st.Tasks.Total != 2 || st.Tasks.ByState["completed"] != 2 || st.Tasks.BySkill["health-report"] != 1 ||
		st.Card.Name != "OmniRoute" || len(st.Card.Skills) != 5 {
		t.Fatalf("status %+v", st)
	}
	var list struct {
		Tasks []struct{ ID string }
		Total int
	}
	_ = json.Unmarshal(g.Want(http.StatusOK, "GET", "/api/a2a/tasks?skill=provider-discovery&limit=200", nil).Body, &list)
	if list.Total != 1 || len(list.Tasks) != 1 || list.Tasks[0].ID != tk.ID {
		t.Fatalf("list %+v", list)
	}
	_ = json.Unmarshal(g.Want(http.StatusOK, "GET", "/api/a2a/tasks?limit=1&offset=1", nil).Body, &list)
	if list.Total != 2 || len(list.Tasks) != 1 {
		t.Fatalf("page %+v", list)
	}
	for _, q := range []string{"limit=201", "limit=-1", "limit=x", "state=done", "skill=nope", "offset=-3"} {
		g.WantError(http.StatusBadRequest, "GET", "/api/a2a/tasks?"+q, nil)
	}
	g.Want(http.StatusOK, "GET", "/api/a2a/tasks/"+tk.ID, nil)
	g.WantError(http.StatusNotFound, "GET", "/api/a2a/tasks/task_nope", nil)
	g.WantError(http.StatusConflict, "POST", "/api/a2a/tasks/"+tk.ID+"/cancel", nil)
	g.WantError(http.StatusNotFound, "POST", "/api/a2a/tasks/task_nope/cancel", nil)
	g.WantError(http.StatusNotImplemented, "POST", "/api/a2a/tasks", map[string]any{})

	// Another site's page in the operator's browser is refused.
	g.WantError(http.StatusForbidden, "POST", "/api/a2a/tasks/"+tk.ID+"/cancel", nil, "Origin", "https://evil.example")
	// A gateway key is no management login; nor is no cookie.
	anon := &http.Client{}
	for _, hdr := range [][]string{nil, admintest.Bearer(g.k1)} {
		for _, p := range []string{"/api/a2a/status", "/api/a2a/tasks", "/api/a2a/tasks/" + tk.ID} {
			hr, _ := http.NewRequest("GET", g.Srv.URL+p, nil)
			if hdr != nil {
				hr.Header.Set(hdr[0], hdr[1])
			}
			res, err := anon.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			want := http.StatusUnauthorized
			if hdr != nil {
				want = http.StatusForbidden // a key without the manage scope
			}
			if res.StatusCode != want {
				t.Fatalf("%s %v: %d", p, hdr, res.StatusCode)
			}
		}
	}
}
