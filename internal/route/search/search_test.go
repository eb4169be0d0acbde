package search_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// call is one request a fake upstream received.
type call struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// upstream is a fake search provider answering its recorded fixture
// (testdata/<kind>_answer.json), or a status set with fail; with hold
// set, each call waits until release is closed.
type upstream struct {
	*httptest.Server
	mu      sync.Mutex
	status  int
	calls   []call
	hold    bool
	release chan struct{}
}

func newUpstream(t *testing.T, kind string) *upstream {
	u := &upstream{status: http.StatusOK, release: make(chan struct{})}
	answer := formattest.Testdata(t, kind+"_answer.json")
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.calls = append(u.calls, call{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), body: b})
		status, hold := u.status, u.hold
		u.mu.Unlock()
		if hold {
			select {
			case <-u.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `{"detail":{"error":"internal server error"}}`)
			return
		}
		w.Write(answer)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) fail(status int) { u.mu.Lock(); u.status = status; u.mu.Unlock() }

func (u *upstream) n() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.calls) }

func (u *upstream) last(t *testing.T) call {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.calls) == 0 {
		t.Fatal("the upstream was not called")
	}
	return u.calls[len(u.calls)-1]
}

// base is the base URL path of each upstream's API.
var base = map[string]string{"searxng": "", "tavily": "", "brave": "/res/v1", "exa": "", "serper": ""}

// authHeader is the header each upstream takes its key in, and its prefix.
var authHeader = map[string][2]string{
	"searxng": {"Authorization", "Bearer "}, "tavily": {"Authorization", "Bearer "},
	"brave": {"X-Subscription-Token", ""}, "exa": {"X-Api-Key", ""}, "serper": {"X-Api-Key", ""},
}

// provider adds a provider of type kind named id at u.
func provider(e *admintest.Env, id, kind string, u *upstream) {
	e.T.Helper()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": kind,
		"base_url": u.URL + base[kind], "api_key": "sk-" + id + "-upstream-key"})
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

func createKey(e *admintest.Env, body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

// answer is the normalized answer.
type answer struct {
	Object   string `json:"object"`
	Query    string `json:"query"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Results  []struct {
		Title         string   `json:"title"`
		URL           string   `json:"url"`
		Content       string   `json:"content"`
		Score         *float64 `json:"score"`
		PublishedDate string   `json:"published_date"`
	} `json:"results"`
	Answer string   `json:"answer"`
	Images []string `json:"images"`
	Usage  struct {
		Searches  int64 `json:"searches"`
		Cached    bool  `json:"cached"`
		Coalesced bool  `json:"coalesced"`
	} `json:"usage"`
}

func decodeAnswer(t *testing.T, body []byte) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	return a
}

// kindBody is a search asking for every filter kind honours.
func kindBody(kind string) map[string]any {
	b := map[string]any{"provider": "p", "query": "who is leo messi", "max_results": 5, "include_answer": true}
	switch kind {
	case "tavily":
		b["include_domains"], b["exclude_domains"] = []string{"wikipedia.org", "Britannica.com"}, []string{"example.com"}
		b["search_depth"], b["topic"], b["include_images"] = "advanced", "general", true
	case "brave":
		b["include_domains"], b["exclude_domains"] = []string{"wikipedia.org", "britannica.com"}, []string{"example.com"}
		b["country"], b["language"], b["safe_search"] = "US", "en", "strict"
	case "exa":
		b["include_domains"], b["exclude_domains"] = []string{"wikipedia.org"}, []string{"example.com"}
	case "serper":
		b["include_domains"] = []string{"wikipedia.org"}
		b["country"], b["language"] = "us", "en"
	case "searxng":
		b["language"], b["safe_search"], b["topic"] = "en", "moderate", "news"
	}
	return b
}

// Each upstream is sent its own wire format at its own path with the
// connection's key in its own header, and its answer comes back in the
// one normalized shape; a result whose URL is no web address is dropped.
func TestSearchUpstreams(t *testing.T) {
	for _, kind := range []string{"searxng", "tavily", "brave", "exa", "serper"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			u := newUpstream(t, kind)
			provider(e, "p", kind, u)
			r := e.Want(http.StatusOK, "POST", "/v1/search", kindBody(kind))
			c := u.last(t)
			h := authHeader[kind]
			if got := c.header.Get(h[0]); got != h[1]+"sk-p-upstream-key" {
				t.Fatalf("upstream key header %s = %q", h[0], got)
			}
			if m := r.Header.Get("X-OmniRoute-Model"); m != "p/search" || r.Header.Get("X-OmniRoute-Cache") != "MISS" {
				t.Fatalf("headers %v", r.Header)
			}
			sent := fmt.Sprintf("%s %s?%s\n", c.method, c.path, c.query)
			if len(c.body) > 0 {
				sent += string(formattest.Reindent(t, c.body))
			}
			formattest.Golden(t, filepath.Join("testdata", "golden", kind+"_request.txt"), []byte(sent))
			formattest.Golden(t, filepath.Join("testdata", "golden", kind+"_response.json"), formattest.Reindent(t, r.Body))
			a := decodeAnswer(t, r.Body)
			if a.Object != "search.result" || a.Provider != "p" || a.Model != "p/search" || a.Query != "who is leo messi" ||
				len(a.Results) != 2 || !strings.HasPrefix(a.Results[0].URL, "https://") || a.Results[0].Title == "" ||
				a.Results[0].Content == "" || a.Usage.Searches != 1 || a.Usage.Cached {
				t.Fatalf("answer %s", r.Body)
			}
			if (kind == "tavily" || kind == "serper") && a.Answer == "" {
				t.Fatalf("%s gives an answer: %s", kind, r.Body)
			}
		})
	}
}

// A time range reaches each upstream in its own terms.
func TestSearchTimeRange(t *testing.T) {
	want := map[string]string{"searxng": "time_range=week", "tavily": `"time_range":"week"`, "brave": "freshness=pw",
		"exa": `"startPublishedDate":"`, "serper": `"tbs":"qdr:w"`}
	for kind, w := range want {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			u := newUpstream(t, kind)
			provider(e, "p", kind, u)
			e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"provider": "p", "query": "news", "time_range": "w"})
			c := u.last(t)
			if !strings.Contains(c.query+string(c.body), w) {
				t.Fatalf("upstream got %s %s, want %s", c.query, c.body, w)
			}
		})
	}
}

// GET /v1/search lists the search providers, the first the default, with
// what each honours; providers of other types are not listed.
func TestSearchList(t *testing.T) {
	e := newEnv(t)
	provider(e, "a-tv", "tavily", newUpstream(t, "tavily"))
	provider(e, "b-br", "brave", newUpstream(t, "brave"))
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "chat", "type": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "k"})
	// The model list shows each search provider's model as a search one.
	if r := e.Want(http.StatusOK, "GET", "/v1/models", nil); !strings.Contains(string(r.Body), `{"id":"a-tv/search","object":"model","created":0,"owned_by":"a-tv","type":"search"}`) {
		t.Fatalf("models %s", r.Body)
	}
	r := e.Want(http.StatusOK, "GET", "/v1/search", nil)
	var out struct {
		Object string `json:"object"`
		Data   []struct {
			ID           string         `json:"id"`
			Type         string         `json:"type"`
			Model        string         `json:"model"`
			Default      bool           `json:"default"`
			Capabilities map[string]any `json:"capabilities"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Object != "list" || len(out.Data) != 2 {
		t.Fatalf("list %s", r.Body)
	}
	tv, br := out.Data[0], out.Data[1]
	if tv.ID != "a-tv" || !tv.Default || tv.Model != "a-tv/search" || tv.Capabilities["answer"] != true || tv.Capabilities["country"] != false ||
		br.ID != "b-br" || br.Default || br.Capabilities["safe_search"] != true || br.Capabilities["max_results"] != 20.0 {
		t.Fatalf("list %s", r.Body)
	}
	e.Want(http.StatusUnauthorized, "GET", "/v1/search", nil, admintest.Bearer("sk-omni-wrong")...)
}

// A repeated search of one key is answered from the response cache: the
// upstream is called once, the repeat bills no search and says so; the
// same search by another key is its own (the cache is per key).
func TestSearchCache(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "tavily")
	provider(e, "tv", "tavily", u)
	_, a := createKey(e, map[string]any{"name": "a"})
	_, b := createKey(e, map[string]any{"name": "b"})
	body := map[string]any{"query": "who is leo messi", "provider": "tv"}
	first := e.Want(http.StatusOK, "POST", "/v1/search", body, admintest.Bearer(a)...)
	again := e.Want(http.StatusOK, "POST", "/v1/search", body, admintest.Bearer(a)...)
	if u.n() != 1 || again.Header.Get("X-OmniRoute-Cache") != "HIT" {
		t.Fatalf("upstream calls %d, cache %q", u.n(), again.Header.Get("X-OmniRoute-Cache"))
	}
	fa, ag := decodeAnswer(t, first.Body), decodeAnswer(t, again.Body)
	if !ag.Usage.Cached || ag.Usage.Searches != 0 || fa.Usage.Searches != 1 || len(ag.Results) != len(fa.Results) || ag.Results[0].URL != fa.Results[0].URL {
		t.Fatalf("first %s\nrepeat %s", first.Body, again.Body)
	}
	// X-OmniRoute-No-Cache: true asks the upstream again, and keeps
	// nothing.
	nc := e.Want(http.StatusOK, "POST", "/v1/search", body, append(admintest.Bearer(a), "X-OmniRoute-No-Cache", "true")...)
	if u.n() != 2 || decodeAnswer(t, nc.Body).Usage.Cached || nc.Header.Get("X-OmniRoute-Cache") != "" {
		t.Fatalf("no-cache: upstream calls %d, %v %s", u.n(), nc.Header, nc.Body)
	}
	// Another filter is another search.
	e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "who is leo messi", "provider": "tv", "max_results": 3}, admintest.Bearer(a)...)
	if u.n() != 3 {
		t.Fatalf("upstream calls %d after another max_results", u.n())
	}
	other := e.Want(http.StatusOK, "POST", "/v1/search", body, admintest.Bearer(b)...)
	if u.n() != 4 || decodeAnswer(t, other.Body).Usage.Cached {
		t.Fatalf("another key's search was answered from the first key's cache (upstream calls %d)", u.n())
	}
}

// analytics reads GET /v1/search/analytics.
func analytics(t *testing.T, e *admintest.Env) map[string]map[string]any {
	t.Helper()
	var out struct {
		Object    string           `json:"object"`
		Scope     string           `json:"scope"`
		Providers []map[string]any `json:"providers"`
		Totals    map[string]any   `json:"totals"`
	}
	r := e.Want(http.StatusOK, "GET", "/v1/search/analytics", nil)
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Object != "search.analytics" || out.Scope != "replica" {
		t.Fatalf("analytics %s", r.Body)
	}
	by := map[string]map[string]any{"*": out.Totals}
	for _, p := range out.Providers {
		by[p["provider"].(string)] = p
	}
	return by
}

// N identical searches of one key at once make one upstream call; the
// others wait for its answer and bill nothing.
func TestSearchCoalescing(t *testing.T) {
	const n = 8
	e := newEnv(t)
	u := newUpstream(t, "exa")
	u.hold = true
	provider(e, "ex", "exa", u)
	body := map[string]any{"query": "identical", "provider": "ex"}
	var wg sync.WaitGroup
	answers := make([]answer, n)
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.Do("POST", "/v1/search", body)
			statuses[i] = r.Status
			json.Unmarshal(r.Body, &answers[i])
		}()
	}
	testenv.Eventually(t, "all searches waiting", func() bool {
		p := analytics(t, e)["ex"]
		return p != nil && p["in_flight"] == float64(n)
	})
	close(u.release)
	wg.Wait()
	billed, shared := 0, 0
	for i := range n {
		if statuses[i] != http.StatusOK || len(answers[i].Results) != 2 {
			t.Fatalf("search %d: status %d, %+v", i, statuses[i], answers[i])
		}
		billed += int(answers[i].Usage.Searches)
		if answers[i].Usage.Coalesced || answers[i].Usage.Cached {
			shared++
		}
	}
	if u.n() != 1 || billed != 1 || shared != n-1 {
		t.Fatalf("upstream calls %d, billed %d, shared %d", u.n(), billed, shared)
	}
	p := analytics(t, e)["ex"]
	if p["requests"] != float64(n) || p["upstream_calls"] != 1.0 || p["coalesced"].(float64)+p["cache_hits"].(float64) != n-1 || p["in_flight"] != 0.0 {
		t.Fatalf("analytics %v", p)
	}
}

// The analytics after a known sequence: a miss, a hit, an upstream
// failure; they carry no query text, and list only configured providers.
func TestSearchAnalytics(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "serper")
	provider(e, "se", "serper", u)
	provider(e, "idle", "brave", newUpstream(t, "brave"))
	e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "secret plans one", "provider": "se"})
	e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "secret plans one", "provider": "se"})
	u.fail(http.StatusInternalServerError)
	e.WantError(http.StatusInternalServerError, "POST", "/v1/search", map[string]any{"query": "secret plans two", "provider": "se"})
	by := analytics(t, e)
	se := by["se"]
	if se["type"] != "serper" || se["requests"] != 3.0 || se["upstream_calls"] != 2.0 || se["errors"] != 1.0 || se["cache_hits"] != 1.0 ||
		se["hit_rate"] != 0.3333 {
		t.Fatalf("analytics of se %v", se)
	}
	lat := se["latency_ms"].(map[string]any)
	if lat["samples"] != 2.0 || lat["p95"].(float64) < lat["p50"].(float64) {
		t.Fatalf("latency %v", lat)
	}
	if idle := by["idle"]; idle == nil || idle["requests"] != 0.0 || by["*"]["requests"] != 3.0 {
		t.Fatalf("analytics %v", by)
	}
	t.Logf("se analytics: %v", se)
	r := e.Want(http.StatusOK, "GET", "/v1/search/analytics", nil)
	if strings.Contains(string(r.Body), "secret") {
		t.Fatalf("analytics carry query text: %s", r.Body)
	}
}

// A combo's first target failing with a 500 falls back to the next one;
// so does a search naming no provider, over the configured search
// providers in order. The usage record names the search modality.
func TestSearchFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newUpstream(t, "tavily"), newUpstream(t, "brave")
	bad.fail(http.StatusInternalServerError)
	provider(e, "a-bad", "tavily", bad)
	provider(e, "b-good", "brave", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "web", "strategy": "priority",
		"targets": []string{"a-bad/search", "b-good/search"}})
	r := e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "combo", "model": "web"})
	if bad.n() != 1 || good.n() != 1 || r.Header.Get("X-OmniRoute-Model") != "b-good/search" || decodeAnswer(t, r.Body).Provider != "b-good" {
		t.Fatalf("calls %d %d, model %q: %s", bad.n(), good.n(), r.Header.Get("X-OmniRoute-Model"), r.Body)
	}
	var rec map[string]any
	testenv.Eventually(t, "the search usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(t)["logs"].([]any)
		if len(logs) == 0 {
			return false
		}
		rec = logs[0].(map[string]any)
		return true
	})
	if rec["modality"] != "search" || rec["unit"] != "search" || rec["quantity"] != 1.0 || rec["provider"] != "b-good" ||
		rec["attempts"] != 2.0 || rec["endpoint"] != "/v1/search" {
		t.Fatalf("usage record %v", rec)
	}

	// No provider named: the default order, a-bad then b-good.
	r = e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "default order"})
	if bad.n() != 2 || good.n() != 2 || decodeAnswer(t, r.Body).Provider != "b-good" {
		t.Fatalf("default order: calls %d %d: %s", bad.n(), good.n(), r.Body)
	}
	// A filter only the second honours skips the first without calling it.
	r = e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "filtered", "country": "de"})
	if bad.n() != 2 || good.n() != 3 || !strings.Contains(good.last(t).query, "country=DE") {
		t.Fatalf("filter: calls %d %d", bad.n(), good.n())
	}
	// A filter none honours is a 400.
	msg := e.WantError(http.StatusBadRequest, "POST", "/v1/search", map[string]any{"query": "x", "provider": "b-good", "topic": "finance"})
	if !strings.Contains(msg, "topic finance") {
		t.Fatalf("unsupported filter: %s", msg)
	}

	// Every provider failing is the last failure, in OpenAI's shape.
	good.fail(http.StatusServiceUnavailable)
	r = e.Want(http.StatusServiceUnavailable, "POST", "/v1/search", map[string]any{"query": "all down"})
	if !strings.Contains(string(r.Body), `"type":"server_error"`) {
		t.Fatalf("all failed: %s", r.Body)
	}
}

// A budget is kept in searches at the price per 1,000; an answer from the
// cache costs nothing.
func TestSearchBudget(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "searxng")
	provider(e, "sx", "searxng", u)
	id, raw := createKey(e, map[string]any{"name": "ci"})
	// $5 per 1,000 searches: $0.005 a search.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "sx/search", "unit": "search", "unit_price": 5})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.012})
	spent := func() float64 {
		b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
		return b["spentUsd"].(float64)
	}
	q := func(s string) map[string]any { return map[string]any{"query": s, "provider": "sx"} }
	e.Want(http.StatusOK, "POST", "/v1/search", q("one"), admintest.Bearer(raw)...)
	if s := spent(); s != 0.005 {
		t.Fatalf("spent %v after one search, want 0.005", s)
	}
	e.Want(http.StatusOK, "POST", "/v1/search", q("one"), admintest.Bearer(raw)...)
	if s := spent(); s != 0.005 {
		t.Fatalf("spent %v after a cached repeat, want 0.005", s)
	}
	e.Want(http.StatusOK, "POST", "/v1/search", q("two"), admintest.Bearer(raw)...)
	e.Want(http.StatusOK, "POST", "/v1/search", q("three"), admintest.Bearer(raw)...) // admitted under the limit
	if s := spent(); s < 0.0149 || s > 0.0151 {
		t.Fatalf("spent %v after three searches, want 0.015", s)
	}
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/search", q("four"), admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) || u.n() != 3 {
		t.Fatalf("over budget: %s (upstream calls %d)", r.Body, u.n())
	}
}

// A key's policy and request limits hold for search as for chat.
func TestSearchKeyPolicyAndRPM(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "tavily")
	provider(e, "tv", "tavily", u)
	_, limited := createKey(e, map[string]any{"name": "only-brave", "allowed_providers": []string{"br"}})
	for _, body := range []map[string]any{{"query": "q", "provider": "tv"}, {"query": "q", "model": "tv/search"}, {"query": "q"}} {
		r := e.Want(http.StatusForbidden, "POST", "/v1/search", body, admintest.Bearer(limited)...)
		if !strings.Contains(string(r.Body), `"type":"permission_error"`) || u.n() != 0 {
			t.Fatalf("policy refusal %s, upstream calls %d", r.Body, u.n())
		}
	}
	_, slow := createKey(e, map[string]any{"name": "slow", "rpm": 1})
	e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "q", "provider": "tv"}, admintest.Bearer(slow)...)
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/search", map[string]any{"query": "q2", "provider": "tv"}, admintest.Bearer(slow)...)
	if !strings.Contains(string(r.Body), "rpm limit of 1 reached") || u.n() != 1 {
		t.Fatalf("rpm refusal %s, upstream calls %d", r.Body, u.n())
	}
	e.Want(http.StatusUnauthorized, "POST", "/v1/search", map[string]any{"query": "q"}, admintest.Bearer("sk-omni-wrong")...)
	e.Want(http.StatusUnauthorized, "GET", "/v1/search/analytics", nil, admintest.Bearer("sk-omni-wrong")...)
	// A search provider routed a chat answers 400, not 500.
	e.WantError(http.StatusBadRequest, "POST", "/v1/chat/completions", admintest.Chat("tv/search"))
}

// Bad input is a 4xx in OpenAI's error shape before any upstream is
// called.
func TestSearchBadInput(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t, "brave")
	provider(e, "br", "brave", u)
	with := func(change func(map[string]any)) map[string]any {
		b := map[string]any{"query": "q", "provider": "br"}
		change(b)
		return b
	}
	many := make([]string, 21)
	for i := range many {
		many[i] = fmt.Sprintf("d%d.com", i)
	}
	huge := `{"query":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name   string
		status int
		body   any
		hdr    []string
		code   string
	}{
		{"wrong content type", 415, with(func(map[string]any) {}), []string{"Content-Type", "text/plain"}, "unsupported_media_type"},
		{"not JSON", 400, "{", nil, ""},
		{"no query", 400, with(func(b map[string]any) { delete(b, "query") }), nil, "missing_query"},
		{"empty query", 400, with(func(b map[string]any) { b["query"] = "" }), nil, "missing_query"},
		{"blank query", 400, with(func(b map[string]any) { b["query"] = "  \t " }), nil, "missing_query"},
		{"query too long", 400, with(func(b map[string]any) { b["query"] = strings.Repeat("q", 1001) }), nil, "query_too_long"},
		{"max_results zero", 400, with(func(b map[string]any) { b["max_results"] = 0 }), nil, "invalid_max_results"},
		{"max_results 21", 400, with(func(b map[string]any) { b["max_results"] = 21 }), nil, "invalid_max_results"},
		{"max_results huge", 400, with(func(b map[string]any) { b["max_results"] = 1 << 40 }), nil, "invalid_max_results"},
		{"unknown provider", 404, with(func(b map[string]any) { b["provider"] = "nowhere" }), nil, "provider_not_found"},
		{"provider not a name", 400, with(func(b map[string]any) { b["provider"] = "../x" }), nil, "invalid_provider"},
		{"unknown model", 404, with(func(b map[string]any) { delete(b, "provider"); b["model"] = "nowhere/x" }), nil, ""},
		{"provider and model", 400, with(func(b map[string]any) { b["model"] = "br/search" }), nil, "provider_and_model"},
		{"domain with an operator", 400, with(func(b map[string]any) { b["include_domains"] = []string{"a.com OR evil"} }), nil, "invalid_domain"},
		{"too many domains", 400, with(func(b map[string]any) { b["exclude_domains"] = many }), nil, "too_many_domains"},
		{"bad time_range", 400, with(func(b map[string]any) { b["time_range"] = "decade" }), nil, "invalid_time_range"},
		{"bad country", 400, with(func(b map[string]any) { b["country"] = "usa" }), nil, "invalid_country"},
		{"bad language", 400, with(func(b map[string]any) { b["language"] = "en_US;x" }), nil, "invalid_language"},
		{"bad depth", 400, with(func(b map[string]any) { b["search_depth"] = "deep" }), nil, "invalid_search_depth"},
		{"bad safe_search", 400, with(func(b map[string]any) { b["safe_search"] = "maybe" }), nil, "invalid_safe_search"},
		{"oversize body", 413, huge, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.Want(c.status, "POST", "/v1/search", c.body, c.hdr...)
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
	if n := u.n(); n != 0 {
		t.Fatalf("bad requests reached the upstream %d times", n)
	}
}

// A hostile or broken upstream cannot make the gateway hold or pass on
// more than the caps: an answer over 4 MiB is a 502, results beyond 20
// are dropped, contents cut to 8 KiB, URLs over 4 KiB or not http(s)
// dropped.
func TestSearchHostileUpstream(t *testing.T) {
	var mu sync.Mutex
	answer := []byte(`{}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	}))
	t.Cleanup(srv.Close)
	set := func(b []byte) { mu.Lock(); answer = b; mu.Unlock() }
	e := newEnv(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "tv", "type": "tavily", "base_url": srv.URL, "api_key": "k"})

	set([]byte(`{"results":[{"title":"t","url":"https://a.example/","content":"` + strings.Repeat("x", 5<<20) + `"}]}`))
	r := e.Want(http.StatusBadGateway, "POST", "/v1/search", map[string]any{"query": "big", "provider": "tv"})
	if !strings.Contains(string(r.Body), "larger than 4194304 bytes") || !strings.Contains(string(r.Body), `"type":"server_error"`) {
		t.Fatalf("oversize answer: %.300s", r.Body)
	}

	var results []map[string]any
	for i := range 50 {
		results = append(results, map[string]any{"title": strings.Repeat("T", 2000), "url": fmt.Sprintf("https://r%d.example/", i),
			"content": strings.Repeat("é", 10_000), "score": 0.5})
	}
	results[0]["url"] = "https://long.example/" + strings.Repeat("a", 5000)
	results[1]["url"] = "data:text/html,<script>alert(1)</script>"
	b, _ := json.Marshal(map[string]any{"results": results})
	set(b)
	a := decodeAnswer(t, e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "many", "provider": "tv", "max_results": 20}).Body)
	if len(a.Results) != 20 || a.Results[0].URL != "https://r2.example/" {
		t.Fatalf("%d results, first %s", len(a.Results), a.Results[0].URL)
	}
	for _, h := range a.Results {
		if len(h.Content) > 8<<10 || len(h.Title) > 1<<10 || !strings.HasPrefix(h.Content, "é") || strings.ContainsRune(h.Content, '\uFFFD') {
			t.Fatalf("result not cut on a character boundary within the caps: content %d bytes, title %d", len(h.Content), len(h.Title))
		}
	}
	// Not a search answer at all.
	set([]byte(`[1,2,3]`))
	e.Want(http.StatusBadGateway, "POST", "/v1/search", map[string]any{"query": "odd", "provider": "tv"})
}

// A key allowed some search providers sees only those, and a search
// naming none goes to the first of them without touching the others.
func TestSearchDefaultOrderFollowsKeyPolicy(t *testing.T) {
	e := newEnv(t)
	tv, br := newUpstream(t, "tavily"), newUpstream(t, "brave")
	provider(e, "a-tv", "tavily", tv)
	provider(e, "br", "brave", br)
	_, raw := createKey(e, map[string]any{"name": "only-brave", "allowed_providers": []string{"br"}})
	r := e.Want(http.StatusOK, "GET", "/v1/search", nil, admintest.Bearer(raw)...)
	if strings.Contains(string(r.Body), "a-tv") || !strings.Contains(string(r.Body), `"id":"br"`) {
		t.Fatalf("list for a brave-only key: %s", r.Body)
	}
	if all := e.Want(http.StatusOK, "GET", "/v1/search", nil); !strings.Contains(string(all.Body), "a-tv") {
		t.Fatalf("list for the keyless client: %s", all.Body)
	}
	a := decodeAnswer(t, e.Want(http.StatusOK, "POST", "/v1/search", map[string]any{"query": "q"}, admintest.Bearer(raw)...).Body)
	if a.Provider != "br" || tv.n() != 0 || br.n() != 1 {
		t.Fatalf("provider %s, calls tv %d br %d", a.Provider, tv.n(), br.n())
	}
	_, none := createKey(e, map[string]any{"name": "no-search", "allowed_providers": []string{"openai"}})
	r = e.Want(http.StatusForbidden, "POST", "/v1/search", map[string]any{"query": "q"}, admintest.Bearer(none)...)
	if !strings.Contains(string(r.Body), `"code":"model_not_allowed"`) || tv.n()+br.n() != 1 {
		t.Fatalf("no allowed provider: %s", r.Body)
	}
}

// A search that reached its upstream and then timed out is charged its
// reservation (the upstream may bill it), like a chat cut short.
func TestSearchCutShortIsCharged(t *testing.T) {
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
		c.Route.Providers = append(c.Route.Providers, config.RouteProvider{ID: "slow", Type: "exa", BaseURL: hang.URL,
			APIKeys: []config.Secret{"exa-key"}, Timeout: 200 * time.Millisecond})
	})
	e.Login()
	id, raw := createKey(e, map[string]any{"name": "ci"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "slow/*", "unit": "search", "unit_price": 5})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 1})
	r := e.Want(http.StatusGatewayTimeout, "POST", "/v1/search", map[string]any{"query": "slow", "provider": "slow"}, admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), "no answer within 200ms") {
		t.Fatalf("timeout answer %s", r.Body)
	}
	b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
	if s := b["spentUsd"].(float64); s != 0.005 {
		t.Fatalf("spent %v after a search cut short, want its reservation 0.005", s)
	}
}
