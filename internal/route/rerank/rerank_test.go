package rerank_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// upstream is a fake rerank provider answering its recorded fixture
// (testdata/<kind>_answer.json) at the path its API serves, or a status
// set with fail.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	bodies [][]byte
	paths  []string
	auths  []string
}

func newUpstream(t *testing.T, kind string) *upstream {
	u := &upstream{status: http.StatusOK}
	answer := formattest.Testdata(t, kind+"_answer.json")
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies, u.paths, u.auths = append(u.bodies, b), append(u.paths, r.URL.Path), append(u.auths, r.Header.Get("Authorization"))
		status := u.status
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `{"message":"internal server error"}`)
			return
		}
		w.Write(answer)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) fail(status int) { u.mu.Lock(); u.status = status; u.mu.Unlock() }

func (u *upstream) calls() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.bodies) }

func (u *upstream) last(t *testing.T) (path, auth string, body []byte) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the upstream was not called")
	}
	n := len(u.bodies) - 1
	return u.paths[n], u.auths[n], u.bodies[n]
}

// version is the base URL path of each upstream's API.
var version = map[string]string{"cohere": "/v2", "voyage": "/v1", "jina": "/v1"}

// provider adds a provider of type kind named id at u.
func provider(e *admintest.Env, id, kind string, u *upstream, models ...string) {
	e.T.Helper()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": kind,
		"base_url": u.URL + version[kind], "api_key": "sk-" + id + "-upstream-key", "models": models})
}

// newEnv is a gateway with its background writers running (usage
// records reach the store).
func newEnv(t *testing.T) *admintest.Env {
	e := admintest.NewEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.App.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.Login()
	return e
}

func rerankBody(model string) map[string]any {
	return map[string]any{"model": model, "query": "What is the capital of the United States?",
		"documents": []any{"Carson City is the capital city of Nevada.", map[string]any{"text": "Paris is in France."},
			"Washington, D.C. is the capital of the United States."},
		"top_n": 2, "return_documents": true}
}

// Each upstream is sent its own wire format at its own path with the
// connection's key, and its answer comes back in the Cohere shape with
// the documents asked for; top_n beyond the documents is all of them.
func TestRerankUpstreams(t *testing.T) {
	for _, kind := range []string{"cohere", "voyage", "jina"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			u := newUpstream(t, kind)
			provider(e, "p", kind, u)
			r := e.Want(http.StatusOK, "POST", "/v1/rerank", rerankBody("p/rr-model"))
			path, auth, sent := u.last(t)
			if path != version[kind]+"/rerank" || auth != "Bearer sk-p-upstream-key" {
				t.Fatalf("upstream got %s with %q", path, auth)
			}
			if m := r.Header.Get("X-OmniRoute-Model"); m != "p/rr-model" {
				t.Fatalf("X-OmniRoute-Model %q", m)
			}
			formattest.Golden(t, filepath.Join("testdata", "golden", kind+"_request.json"), formattest.Reindent(t, sent))
			formattest.Golden(t, filepath.Join("testdata", "golden", kind+"_response.json"), formattest.Reindent(t, r.Body))
			var out struct {
				Results []struct {
					Index    int `json:"index"`
					Document struct {
						Text string `json:"text"`
					} `json:"document"`
				} `json:"results"`
			}
			if err := json.Unmarshal(r.Body, &out); err != nil || len(out.Results) != 2 || out.Results[0].Index != 2 ||
				!strings.HasPrefix(out.Results[0].Document.Text, "Washington") {
				t.Fatalf("answer %s", r.Body)
			}
		})
	}
}

// A combo's first target failing with a 500 falls back to the next one
// before the answer; the usage record names the rerank modality, the
// documents and the target that answered.
func TestRerankFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newUpstream(t, "cohere"), newUpstream(t, "voyage")
	bad.fail(http.StatusInternalServerError)
	provider(e, "co", "cohere", bad)
	provider(e, "vo", "voyage", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "ranker", "strategy": "priority",
		"targets": []string{"co/rerank-v3.5", "vo/rerank-2"}})
	r := e.Want(http.StatusOK, "POST", "/v1/rerank", rerankBody("ranker"))
	if bad.calls() != 1 || good.calls() != 1 || r.Header.Get("X-OmniRoute-Model") != "vo/rerank-2" {
		t.Fatalf("calls %d %d, model %q", bad.calls(), good.calls(), r.Header.Get("X-OmniRoute-Model"))
	}
	if tokens := r.Object(t)["usage"].(map[string]any)["total_tokens"]; tokens != 26.0 {
		t.Fatalf("usage %v, want Voyage's 26 tokens", tokens)
	}
	var rec map[string]any
	testenv.Eventually(t, "the rerank usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(t)["logs"].([]any)
		if len(logs) == 0 {
			return false
		}
		rec = logs[0].(map[string]any)
		return true
	})
	if rec["modality"] != "rerank" || rec["unit"] != "document" || rec["quantity"] != 3.0 || rec["provider"] != "vo" ||
		rec["attempts"] != 2.0 || rec["inputTokens"] != 26.0 || rec["endpoint"] != "/v1/rerank" {
		t.Fatalf("usage record %v", rec)
	}
	// rerank-2 costs $0.05 per million tokens.
	if c := rec["costUsd"].(float64); c < 26*0.05/1e6*0.999 || c > 26*0.05/1e6*1.001 {
		t.Fatalf("cost %v", c)
	}
	// The usage breakdown sums the call under its modality and unit, and
	// the modality filter selects it.
	groups := func(q string) string {
		return string(e.Want(http.StatusOK, "GET", "/api/usage/groups?period=24h&"+q, nil).Body)
	}
	if g := groups("by=modality"); !strings.Contains(g, `"key":"rerank","requests":1,`) {
		t.Fatalf("by modality: %s", g)
	}
	if g := groups("by=unit"); !strings.Contains(g, `"key":"document","requests":1,`) || !strings.Contains(g, `"quantity":3}`) {
		t.Fatalf("by unit: %s", g)
	}
	if g := groups("by=provider&modality=chat"); strings.Contains(g, `"key":"vo"`) {
		t.Fatalf("chat by provider: %s", g)
	}
	if g := groups("by=provider&modality=rerank"); !strings.Contains(g, `"key":"vo","requests":1,`) {
		t.Fatalf("rerank by provider: %s", g)
	}

	// Every target failing is the last failure, in OpenAI's shape, with
	// the attempts.
	good.fail(http.StatusServiceUnavailable)
	r = e.Want(http.StatusServiceUnavailable, "POST", "/v1/rerank", rerankBody("ranker"))
	if !strings.Contains(string(r.Body), `"attempts"`) || !strings.Contains(string(r.Body), `"type":"server_error"`) {
		t.Fatalf("all failed: %s", r.Body)
	}
}

func createKey(e *admintest.Env, body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

// A budget is kept in the modality's unit: documents at the model's
// price per 1,000, reserved before the call and charged after it.
func TestRerankBudget(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "jina")
	provider(e, "j", "jina", u)
	id, raw := createKey(e, map[string]any{"name": "ci"})
	// $1 per 1,000 documents: three documents cost $0.003.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "j/ranker", "unit": "document", "unit_price": 1})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.005})
	spent := func() float64 {
		b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
		return b["spentUsd"].(float64)
	}
	e.Want(http.StatusOK, "POST", "/v1/rerank", rerankBody("j/ranker"), admintest.Bearer(raw)...)
	if s := spent(); s != 0.003 {
		t.Fatalf("spent %v after one rerank of 3 documents, want 0.003", s)
	}
	// A call is admitted while the spend is under the limit.
	e.Want(http.StatusOK, "POST", "/v1/rerank", rerankBody("j/ranker"), admintest.Bearer(raw)...)
	if s := spent(); s != 0.006 {
		t.Fatalf("spent %v after two reranks, want 0.006", s)
	}
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/rerank", rerankBody("j/ranker"), admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) || r.Header.Get("Retry-After") == "" || u.calls() != 2 {
		t.Fatalf("over budget: %v %s (upstream calls %d)", r.Header, r.Body, u.calls())
	}
}

// A key's policy and request limits hold for rerank as for chat.
func TestRerankKeyPolicyAndRPM(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "cohere")
	provider(e, "co", "cohere", u)
	_, limited := createKey(e, map[string]any{"name": "only-voyage", "allowed_providers": []string{"vo"}})
	r := e.Want(http.StatusForbidden, "POST", "/v1/rerank", rerankBody("co/rerank-v3.5"), admintest.Bearer(limited)...)
	if !strings.Contains(string(r.Body), `"type":"permission_error"`) || u.calls() != 0 {
		t.Fatalf("policy refusal %s, upstream calls %d", r.Body, u.calls())
	}
	_, slow := createKey(e, map[string]any{"name": "slow", "rpm": 1})
	e.Want(http.StatusOK, "POST", "/v1/rerank", rerankBody("co/rerank-v3.5"), admintest.Bearer(slow)...)
	r = e.Want(http.StatusTooManyRequests, "POST", "/v1/rerank", rerankBody("co/rerank-v3.5"), admintest.Bearer(slow)...)
	if !strings.Contains(string(r.Body), "rpm limit of 1 reached") || r.Header.Get("Retry-After") == "" || u.calls() != 1 {
		t.Fatalf("rpm refusal %s, upstream calls %d", r.Body, u.calls())
	}
	e.Want(http.StatusUnauthorized, "POST", "/v1/rerank", rerankBody("co/rerank-v3.5"), admintest.Bearer("sk-omni-wrong")...)
}

// A key holder cannot make the gateway hold, send or pay for more than
// the caps: bad and oversized requests are 4xx in OpenAI's error shape,
// before any upstream is called.
func TestRerankBadInput(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "cohere")
	provider(e, "co", "cohere", u)
	with := func(change func(map[string]any)) map[string]any {
		b := rerankBody("co/rerank-v3.5")
		change(b)
		return b
	}
	docs := make([]string, 1001)
	for i := range docs {
		docs[i] = "d"
	}
	huge := `{"model":"co/rerank-v3.5","query":"q","documents":["` + strings.Repeat("a", 9<<20) + `"]}`
	cases := []struct {
		name   string
		status int
		body   any
		hdr    []string
		code   string
	}{
		{"wrong content type", 415, rerankBody("co/rerank-v3.5"), []string{"Content-Type", "text/plain"}, "unsupported_media_type"},
		{"not JSON", 400, "{", nil, ""},
		{"no model", 400, with(func(b map[string]any) { delete(b, "model") }), nil, "missing_model"},
		{"no query", 400, with(func(b map[string]any) { delete(b, "query") }), nil, "missing_query"},
		{"empty query", 400, with(func(b map[string]any) { b["query"] = "" }), nil, "missing_query"},
		{"no documents", 400, with(func(b map[string]any) { delete(b, "documents") }), nil, "missing_documents"},
		{"empty documents", 400, with(func(b map[string]any) { b["documents"] = []string{} }), nil, "missing_documents"},
		{"too many documents", 400, with(func(b map[string]any) { b["documents"] = docs }), nil, "too_many_documents"},
		{"document not text", 400, with(func(b map[string]any) { b["documents"] = []any{7} }), nil, "invalid_document"},
		{"document object without text", 400, with(func(b map[string]any) { b["documents"] = []any{map[string]any{"title": "x"}} }), nil, "invalid_document"},
		{"document too long", 400, with(func(b map[string]any) { b["documents"] = []string{strings.Repeat("a", 65<<10)} }), nil, "document_too_long"},
		{"query too long", 400, with(func(b map[string]any) { b["query"] = strings.Repeat("q", 33<<10) }), nil, "query_too_long"},
		{"top_n zero", 400, with(func(b map[string]any) { b["top_n"] = 0 }), nil, "invalid_top_n"},
		{"top_n negative", 400, with(func(b map[string]any) { b["top_n"] = -1 }), nil, "invalid_top_n"},
		{"top_n huge", 400, with(func(b map[string]any) { b["top_n"] = 1 << 40 }), nil, "invalid_top_n"},
		{"top_k huge", 400, with(func(b map[string]any) { delete(b, "top_n"); b["top_k"] = 5000 }), nil, "invalid_top_n"},
		{"oversize body", 413, huge, nil, ""},
		{"unknown model", 404, with(func(b map[string]any) { b["model"] = "nowhere/x" }), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.Want(c.status, "POST", "/v1/rerank", c.body, c.hdr...)
			var eb struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
				t.Fatalf("body %.300s is not an OpenAI error", r.Body)
			}
			if c.code != "" && (eb.Error.Code == nil || *eb.Error.Code != c.code) {
				t.Fatalf("code %v, want %s (%s)", eb.Error.Code, c.code, eb.Error.Message)
			}
		})
	}
	if n := u.calls(); n != 0 {
		t.Fatalf("bad requests reached the upstream %d times", n)
	}
	// top_n beyond the documents asks for all of them.
	e.Want(http.StatusOK, "POST", "/v1/rerank", with(func(b map[string]any) { b["top_n"] = 900 }))
	if _, _, body := u.last(t); !strings.Contains(string(body), `"top_n":3`) {
		t.Fatalf("upstream body %s", body)
	}
}

// /v1/models lists rerank models with their type; a rerank provider
// routed a chat answers 400, not 500.
func TestRerankModelsAndChat(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "cohere")
	provider(e, "co", "cohere", u, "rerank-v3.5")
	// A model of a rerank-only provider type is a rerank model whatever
	// its name says.
	provider(e, "vo", "voyage", newUpstream(t, "voyage"), "lite-2")
	r := e.Want(http.StatusOK, "GET", "/v1/models", nil)
	for _, want := range []string{`{"id":"co/rerank-v3.5","object":"model","created":0,"owned_by":"co","type":"rerank"}`,
		`{"id":"vo/lite-2","object":"model","created":0,"owned_by":"vo","type":"rerank"}`} {
		if !strings.Contains(string(r.Body), want) {
			t.Fatalf("models %s, want %s", r.Body, want)
		}
	}
	e.WantError(http.StatusBadRequest, "POST", "/v1/chat/completions", admintest.Chat("co/rerank-v3.5"))
}

// A rerank that reached its upstream and then timed out is charged its
// reservation (the upstream may bill it), like a chat cut short; one that
// reached no upstream costs nothing.
func TestRerankCutShortIsCharged(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	e := admintest.NewEnv(t, func(c *config.Config) {
		c.Route.Providers = append(c.Route.Providers, config.RouteProvider{ID: "slow", Type: "jina", BaseURL: hang.URL + "/v1",
			APIKeys: []config.Secret{"sk-slow"}, Timeout: 200 * time.Millisecond})
	})
	e.Login()
	id, raw := createKey(e, map[string]any{"name": "ci"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "slow/*", "unit": "document", "unit_price": 1})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 1})
	r := e.Want(http.StatusGatewayTimeout, "POST", "/v1/rerank", rerankBody("slow/ranker"), admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), "no answer within 200ms") {
		t.Fatalf("timeout answer %s", r.Body)
	}
	b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
	if s := b["spentUsd"].(float64); s != 0.003 {
		t.Fatalf("spent %v after a rerank of 3 documents cut short, want its reservation 0.003", s)
	}
}
