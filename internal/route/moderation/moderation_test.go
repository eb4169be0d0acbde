package moderation_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// upstream is a fake OpenAI moderation API: POST /v1/moderations answers
// the recorded verdict (testdata/openai_answer.json) once per input, or
// the status set with fail.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	bodies [][]byte
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{status: http.StatusOK}
	var answer struct {
		ID      string            `json:"id"`
		Model   string            `json:"model"`
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(formattest.Testdata(t, "openai_answer.json"), &answer); err != nil {
		t.Fatal(err)
	}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, b)
		status := u.status
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/moderations" || r.Header.Get("Authorization") != "Bearer sk-upstream" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"message":"not here","type":"invalid_request_error"}}`)
			return
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"message":"The server had an error","type":"server_error"}}`)
			return
		}
		var in struct {
			Input any `json:"input"`
		}
		_ = json.Unmarshal(b, &in)
		n := 1
		if list, ok := in.Input.([]any); ok {
			n = len(list)
		}
		out := answer
		out.Results = nil
		for range n {
			out.Results = append(out.Results, answer.Results[0])
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) fail(status int) { u.mu.Lock(); u.status = status; u.mu.Unlock() }

func (u *upstream) calls() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.bodies) }

func (u *upstream) last(t *testing.T) []byte {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the upstream was not called")
	}
	return u.bodies[len(u.bodies)-1]
}

// newEnv is a gateway with its background writers running.
func newEnv(t *testing.T) *admintest.Env {
	return admintest.Running(t, nil)
}

func provider(e *admintest.Env, id string, u *upstream, models ...string) {
	e.T.Helper()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": "openai",
		"base_url": u.URL + "/v1", "api_key": "sk-upstream", "models": models})
}

// client is the official client with key, or with a new key of no
// policy when key is "".
func client(e *admintest.Env, key string) openai.Client {
	if key == "" {
		_, key = e.CreateKey(map[string]any{"name": "open"})
	}
	return openai.NewClient(option.WithBaseURL(e.Srv.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// mod moderates with c.
func mod(c openai.Client, ctx context.Context, p openai.ModerationNewParams) (*openai.ModerationNewResponse, error) {
	return c.Moderations.New(ctx, p)
}

// The official client moderates one string without naming a model (the
// default goes to the provider named openai), an array of strings and
// multimodal parts; the upstream is sent OpenAI's shape and the client
// reads OpenAI's answer, named after the model it asked for.
func TestModerationsWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "openai", u)
	c := client(e, "")
	ctx := context.Background()

	res, err := c.Moderations.New(ctx, openai.ModerationNewParams{Input: openai.ModerationNewParamsInputUnion{OfString: openai.String("I want to kill them.")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || !res.Results[0].Flagged || !res.Results[0].Categories.Violence || res.Results[0].Categories.Sexual ||
		res.Results[0].CategoryScores.Violence < 0.99 || res.ID != "modr-0d9740456c391e43c445bf0f010940c7" || res.Model != "omni-moderation-2024-09-26" {
		t.Fatalf("moderation %+v", res)
	}
	if got := res.Results[0].CategoryAppliedInputTypes.Violence; len(got) != 2 {
		t.Fatalf("applied input types %v", got)
	}
	formattest.Golden(t, filepath.Join("testdata", "golden", "string_request.json"), formattest.Reindent(t, u.last(t)))

	res, err = c.Moderations.New(ctx, openai.ModerationNewParams{Model: openai.ModerationModelOmniModerationLatest,
		Input: openai.ModerationNewParamsInputUnion{OfStringArray: []string{"one", "two", "three"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 3 || res.Model != "omni-moderation-latest" {
		t.Fatalf("array moderation: %d results, model %s", len(res.Results), res.Model)
	}
	formattest.Golden(t, filepath.Join("testdata", "golden", "array_request.json"), formattest.Reindent(t, u.last(t)))

	res, err = c.Moderations.New(ctx, openai.ModerationNewParams{Model: "openai/omni-moderation-latest",
		Input: openai.ModerationNewParamsInputUnion{OfModerationMultiModalArray: []openai.ModerationMultiModalInputUnionParam{
			{OfText: &openai.ModerationTextInputParam{Text: "a caption"}},
			{OfImageURL: &openai.ModerationImageURLInputParam{ImageURL: openai.ModerationImageURLInputImageURLParam{URL: "https://example.com/cat.png"}}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 {
		t.Fatalf("multimodal moderation: %d results", len(res.Results))
	}
	formattest.Golden(t, filepath.Join("testdata", "golden", "parts_request.json"), formattest.Reindent(t, u.last(t)))

	var rec map[string]any
	testenv.Eventually(t, "the moderation usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(t)["logs"].([]any)
		if len(logs) < 3 {
			return false
		}
		rec = logs[0].(map[string]any)
		return true
	})
	if rec["modality"] != "moderation" || rec["unit"] != "input" || rec["quantity"] != 2.0 || rec["provider"] != "openai" ||
		rec["targetModel"] != "omni-moderation-latest" || rec["costUsd"] != 0.0 {
		t.Fatalf("usage record %v", rec)
	}
}

// A combo's first target failing with a 500 falls back to the next.
func TestModerationFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newUpstream(t), newUpstream(t)
	bad.fail(http.StatusInternalServerError)
	provider(e, "first", bad)
	provider(e, "second", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "mod", "strategy": "priority",
		"targets": []string{"first/omni-moderation-latest", "second/omni-moderation-latest"}})
	res, err := mod(client(e, ""), context.Background(), openai.ModerationNewParams{Model: "mod",
		Input: openai.ModerationNewParamsInputUnion{OfString: openai.String("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	if bad.calls() != 1 || good.calls() != 1 || len(res.Results) != 1 || res.Model != "mod" {
		t.Fatalf("calls %d %d, answer %+v", bad.calls(), good.calls(), res)
	}
	// A provider type that does not moderate is passed over.
	ru := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(ru.Close)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "ranker", "type": "cohere", "base_url": ru.URL})
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "mixed", "strategy": "priority",
		"targets": []string{"ranker/x", "second/omni-moderation-latest"}})
	if _, err := mod(client(e, ""), context.Background(), openai.ModerationNewParams{Model: "mixed",
		Input: openai.ModerationNewParamsInputUnion{OfString: openai.String("hello")}}); err != nil {
		t.Fatal(err)
	}
	e.WantError(http.StatusBadRequest, "POST", "/v1/moderations", map[string]any{"model": "ranker/x", "input": "hello"})
}

// A budget is kept in inputs at the model's price per 1,000; a key's
// policy and request limits hold as for chat.
func TestModerationBudgetPolicyRPM(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "openai", u)
	ctx := context.Background()
	id, raw := e.CreateKey(map[string]any{"name": "ci"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "openai/omni-moderation-latest", "unit": "input", "unit_price": 1})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.005})
	three := openai.ModerationNewParams{Input: openai.ModerationNewParamsInputUnion{OfStringArray: []string{"a", "b", "c"}}}
	c := client(e, raw)
	for range 2 { // $0.003 each: admitted while under $0.005
		if _, err := c.Moderations.New(ctx, three); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Moderations.New(ctx, three)
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || ae.Code != "budget_exceeded" || u.calls() != 2 {
		t.Fatalf("over budget: %v (upstream calls %d)", err, u.calls())
	}
	b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
	if s := b["spentUsd"].(float64); s != 0.006 {
		t.Fatalf("spent %v, want 0.006", s)
	}

	_, limited := e.CreateKey(map[string]any{"name": "chat-only", "allowed_models": []string{"openai/gpt-*"}})
	_, err = mod(client(e, limited), ctx, three)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Type != "permission_error" {
		t.Fatalf("policy: %v", err)
	}
	_, slow := e.CreateKey(map[string]any{"name": "slow", "rpm": 1})
	if _, err := mod(client(e, slow), ctx, three); err != nil {
		t.Fatal(err)
	}
	_, err = mod(client(e, slow), ctx, three)
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests || !strings.Contains(ae.Message, "rpm limit of 1") {
		t.Fatalf("rpm: %v", err)
	}
	if n := u.calls(); n != 3 {
		t.Fatalf("upstream calls %d, want 3", n)
	}
}

// Bad and oversized requests are 4xx in OpenAI's error shape before any
// upstream is called.
func TestModerationBadInput(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "openai", u, "omni-moderation-latest")
	many := make([]string, 257)
	cases := []struct {
		name   string
		status int
		body   any
		hdr    []string
	}{
		{"wrong content type", 415, map[string]any{"input": "x"}, []string{"Content-Type", "application/x-www-form-urlencoded"}},
		{"not JSON", 400, "{", nil},
		{"no input", 400, map[string]any{"model": "omni-moderation-latest"}, nil},
		{"null input", 400, map[string]any{"input": nil}, nil},
		{"number input", 400, map[string]any{"input": 7}, nil},
		{"empty array", 400, map[string]any{"input": []string{}}, nil},
		{"too many inputs", 400, map[string]any{"input": many}, nil},
		{"bad part", 400, map[string]any{"input": []any{map[string]any{"type": "audio"}}}, nil},
		{"image part without url", 400, map[string]any{"input": []any{map[string]any{"type": "image_url"}}}, nil},
		{"oversize body", 413, `{"input":"` + strings.Repeat("a", 9<<20) + `"}`, nil},
		{"unknown model", 404, map[string]any{"model": "nowhere/x", "input": "x"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.Want(c.status, "POST", "/v1/moderations", c.body, c.hdr...)
			var eb struct {
				Error struct {
					Message string `json:"message"`
					Type    string `json:"type"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
				t.Fatalf("body %.300s is not an OpenAI error", r.Body)
			}
		})
	}
	if n := u.calls(); n != 0 {
		t.Fatalf("bad requests reached the upstream %d times", n)
	}
	r := e.Want(http.StatusOK, "GET", "/v1/models", nil)
	if !strings.Contains(string(r.Body), `"id":"openai/omni-moderation-latest","object":"model","created":0,"owned_by":"openai","type":"moderation"`) {
		t.Fatalf("models %s", r.Body)
	}
}
