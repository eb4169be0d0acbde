package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/config"
)

// recorder is a fake upstream of any format that remembers every request
// (path with query, all credential headers, body) and answers with reply.
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	paths  []string
	creds  []string
	bodies []map[string]any
}

func newRecorder(t *testing.T, reply func(w http.ResponseWriter, r *http.Request, body map[string]any, n int)) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		rec.mu.Lock()
		rec.paths = append(rec.paths, r.URL.RequestURI())
		rec.creds = append(rec.creds, "goog="+r.Header.Get("x-goog-api-key")+" x-api-key="+r.Header.Get("x-api-key")+" auth="+r.Header.Get("Authorization"))
		rec.bodies = append(rec.bodies, body)
		n := len(rec.bodies)
		rec.mu.Unlock()
		reply(w, r, body, n)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// onlyKey fails unless every upstream request carried exactly want and
// never the gateway key.
func (rec *recorder) onlyKey(t *testing.T, want string) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, c := range rec.creds {
		if c != want || strings.Contains(c, gatewayKey) || strings.Contains(rec.paths[i], gatewayKey) {
			t.Fatalf("upstream request %d carried %q (path %s); want only %q", i, c, rec.paths[i], want)
		}
	}
}

// replyGemini answers like the Gemini API from recorded fixtures: the
// n-th generate call gets jsons[n-1] (the last one repeats); streams get
// sse.
func replyGemini(t *testing.T, sse string, jsons ...string) func(http.ResponseWriter, *http.Request, map[string]any, int) {
	var bodies [][]byte
	for _, j := range jsons {
		bodies = append(bodies, fixture(t, j))
	}
	stream := fixture(t, sse)
	return func(w http.ResponseWriter, r *http.Request, _ map[string]any, n int) {
		if strings.HasSuffix(r.URL.Path, ":streamGenerateContent") {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[min(n, len(bodies))-1])
	}
}

// replyByStream answers OpenAI- or Anthropic-format requests from
// fixtures: the n-th non-streamed call gets jsons[n-1].
func replyByStream(t *testing.T, sse string, jsons ...string) func(http.ResponseWriter, *http.Request, map[string]any, int) {
	var bodies [][]byte
	for _, j := range jsons {
		bodies = append(bodies, fixture(t, j))
	}
	stream := fixture(t, sse)
	return func(w http.ResponseWriter, _ *http.Request, body map[string]any, n int) {
		if body["stream"] == true {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(bodies[min(n, len(bodies))-1])
	}
}

func geminiClient(t *testing.T, gw, version string) *genai.Client {
	t.Helper()
	c, err := genai.NewClient(context.Background(), &genai.ClientConfig{APIKey: gatewayKey, Backend: genai.BackendGeminiAPI,
		HTTPOptions: genai.HTTPOptions{BaseURL: gw, APIVersion: version}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var geminiWeather = &genai.Tool{FunctionDeclarations: []*genai.FunctionDeclaration{{
	Name:        "get_weather",
	Description: "Current weather for a location",
	Parameters: &genai.Schema{Type: genai.TypeObject, Required: []string{"location"},
		Properties: map[string]*genai.Schema{"location": {Type: genai.TypeString}, "unit": {Type: genai.TypeString}}},
}}}

func weatherConfig() *genai.GenerateContentConfig {
	return &genai.GenerateContentConfig{
		SystemInstruction: genai.NewContentFromText("You are a weather bot.", genai.RoleUser),
		Tools:             []*genai.Tool{geminiWeather},
	}
}

var weatherQuestion = []*genai.Content{genai.NewContentFromText("Weather in Paris and Oslo?", genai.RoleUser)}

// Gemini SDK → Gemini upstream, on /v1beta and /v1: parallel function
// calls with their thought signature, the results sent back (one by id,
// one by name), the final answer, usage, and only the provider's key
// upstream.
func TestGeminiSDKToolRoundTrip(t *testing.T) {
	for _, version := range []string{"v1beta", "v1"} {
		t.Run(version, func(t *testing.T) {
			up := newRecorder(t, replyGemini(t, "gemini/testdata/streams/text.sse",
				"gemini/testdata/responses/parallel_tools.json", "gemini/testdata/responses/text.json"))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "g", Type: "gemini", BaseURL: up.URL, APIKeys: []config.Secret{"gm-provider"}}}})
			c := geminiClient(t, gw.URL, version)
			ctx := context.Background()
			resp, err := c.Models.GenerateContent(ctx, "g/gemini-2.5-flash", weatherQuestion, weatherConfig())
			if err != nil {
				t.Fatal(err)
			}
			calls := resp.FunctionCalls()
			if len(calls) != 2 || calls[0].Args["location"] != "Paris" || calls[1].Args["location"] != "Oslo" || calls[0].ID == "" || calls[0].ID == calls[1].ID {
				t.Fatalf("function calls: %+v", calls)
			}
			if sig := resp.Candidates[0].Content.Parts[0].ThoughtSignature; len(sig) == 0 {
				t.Fatal("the function call's thought signature was lost")
			}
			u := resp.UsageMetadata
			if u.PromptTokenCount != 96 || u.CandidatesTokenCount != 34 || u.ThoughtsTokenCount != 122 || u.TotalTokenCount != 252 || resp.Candidates[0].FinishReason != genai.FinishReasonStop {
				t.Fatalf("usage %+v finish %s", u, resp.Candidates[0].FinishReason)
			}
			byID := genai.NewPartFromFunctionResponse("get_weather", map[string]any{"result": "18°C, clear"})
			byID.FunctionResponse.ID = calls[0].ID
			byName := genai.NewPartFromFunctionResponse("get_weather", map[string]any{"result": "4°C, snow"})
			history := append(weatherQuestion, resp.Candidates[0].Content, genai.NewContentFromParts([]*genai.Part{byID, byName}, genai.RoleUser))
			resp, err = c.Models.GenerateContent(ctx, "g/gemini-2.5-flash", history, weatherConfig())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(resp.Text(), "Paris is warmer") || resp.UsageMetadata.CachedContentTokenCount != 1536 || resp.UsageMetadata.PromptTokenCount != 2048 {
				t.Fatalf("final answer %q usage %+v", resp.Text(), resp.UsageMetadata)
			}
			up.onlyKey(t, "goog=gm-provider x-api-key= auth=")
			if up.paths[0] != "/v1beta/models/gemini-2.5-flash:generateContent" {
				t.Fatalf("upstream path %s", up.paths[0])
			}
			sys, _ := json.Marshal(up.bodies[0]["systemInstruction"])
			if !strings.Contains(string(sys), "weather bot") {
				t.Fatalf("system instruction did not arrive: %v", up.bodies[0])
			}
			contents := up.bodies[1]["contents"].([]any)
			model := contents[1].(map[string]any)["parts"].([]any)
			results := contents[2].(map[string]any)["parts"].([]any)
			first := model[0].(map[string]any)
			if first["thoughtSignature"] != "CpwCAVSoXO5lZ2VuZGFyeSB0aG91Z2h0IHNpZ25hdHVyZQ==" || len(results) != 2 {
				t.Fatalf("second turn upstream: %v", contents)
			}
			for i, r := range results {
				fr := r.(map[string]any)["functionResponse"].(map[string]any)
				if fr["id"] != calls[i].ID || fr["name"] != "get_weather" {
					t.Fatalf("result %d not paired with its call: %v", i, fr)
				}
			}
		})
	}
}

// Gemini SDK streaming against Gemini, OpenAI and Anthropic upstreams:
// function calls arrive whole, usage (with cached tokens) on the last
// chunk.
func TestGeminiSDKStreaming(t *testing.T) {
	for _, c := range []struct {
		typ, key               string
		reply                  func(*testing.T) func(http.ResponseWriter, *http.Request, map[string]any, int)
		prompt, cached, output int32
	}{
		{"gemini", "goog=k x-api-key= auth=", func(t *testing.T) func(http.ResponseWriter, *http.Request, map[string]any, int) {
			return replyGemini(t, "gemini/testdata/streams/parallel_tools.sse", "gemini/testdata/responses/parallel_tools.json")
		}, 96, 0, 34},
		{"openai", "goog= x-api-key= auth=Bearer k", func(t *testing.T) func(http.ResponseWriter, *http.Request, map[string]any, int) {
			return replyByStream(t, "openai/testdata/parallel_tools.sse", "openai/testdata/parallel_tools.json")
		}, 2048, 1536, 61},
		{"anthropic", "goog= x-api-key=k auth=", func(t *testing.T) func(http.ResponseWriter, *http.Request, map[string]any, int) {
			return replyByStream(t, "anthropic/testdata/streams/parallel_tools.sse", "anthropic/testdata/responses/parallel_tools.json")
		}, 472 + 248 + 2156, 2156, 0},
	} {
		t.Run(c.typ, func(t *testing.T) {
			up := newRecorder(t, c.reply(t))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: c.typ, BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
			cl := geminiClient(t, gw.URL, "v1beta")
			var calls []*genai.FunctionCall
			var last *genai.GenerateContentResponse
			for chunk, err := range cl.Models.GenerateContentStream(context.Background(), "p/model", weatherQuestion, weatherConfig()) {
				if err != nil {
					t.Fatal(err)
				}
				calls = append(calls, chunk.FunctionCalls()...)
				last = chunk
			}
			if len(calls) != 2 {
				t.Fatalf("streamed function calls: %+v", calls)
			}
			for _, fc := range calls {
				if fc.Name != "get_weather" || fc.Args["location"] == nil || fc.ID == "" {
					t.Fatalf("function call corrupted in streaming translation: %+v", fc)
				}
			}
			u := last.UsageMetadata
			if u == nil || u.PromptTokenCount != c.prompt || u.CachedContentTokenCount != c.cached || (c.output != 0 && u.CandidatesTokenCount != c.output) ||
				u.CandidatesTokenCount == 0 || last.Candidates[0].FinishReason != genai.FinishReasonStop {
				t.Fatalf("last chunk %+v usage %+v", last.Candidates, u)
			}
			up.onlyKey(t, c.key)
			if c.typ == "gemini" && up.paths[0] != "/v1beta/models/model:streamGenerateContent?alt=sse" {
				t.Fatalf("upstream path %s", up.paths[0])
			}
		})
	}
}

// Gemini SDK → OpenAI and Anthropic upstreams (not streamed): the calls
// keep the upstream's ids, results go back paired to them, the system
// instruction reaches each format's system slot, usage is converted.
func TestGeminiSDKToOtherUpstreams(t *testing.T) {
	for _, c := range []struct {
		typ, key, json, final, sse, id string
		prompt, cached                 int32
	}{
		{"openai", "goog= x-api-key= auth=Bearer sk-oa", "openai/testdata/parallel_tools.json", "openai/testdata/text.json", "openai/testdata/text.sse", "call_Qm3vT8bN1xY5kR2pL7sW9dF0", 2048, 1536},
		{"anthropic", "goog= x-api-key=sk-oa auth=", "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/responses/text.json", "anthropic/testdata/streams/text.sse", "toolu_01A09q90qw90lq917835lq9", 472 + 248 + 2156, 2156},
	} {
		t.Run(c.typ, func(t *testing.T) {
			up := newRecorder(t, replyByStream(t, c.sse, c.json, c.final))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "up", Type: c.typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-oa"}}}})
			cl := geminiClient(t, gw.URL, "v1")
			ctx := context.Background()
			resp, err := cl.Models.GenerateContent(ctx, "up/model", weatherQuestion, weatherConfig())
			if err != nil {
				t.Fatal(err)
			}
			calls := resp.FunctionCalls()
			if len(calls) != 2 || calls[0].ID != c.id || resp.Candidates[0].FinishReason != genai.FinishReasonStop {
				t.Fatalf("calls %+v", calls)
			}
			if u := resp.UsageMetadata; u.PromptTokenCount != c.prompt || u.CachedContentTokenCount != c.cached || u.TotalTokenCount != u.PromptTokenCount+u.CandidatesTokenCount+u.ThoughtsTokenCount {
				t.Fatalf("usage %+v", u)
			}
			var parts []*genai.Part
			for _, fc := range calls {
				p := genai.NewPartFromFunctionResponse(fc.Name, map[string]any{"result": "18°C"})
				p.FunctionResponse.ID = fc.ID
				parts = append(parts, p)
			}
			history := append(weatherQuestion, resp.Candidates[0].Content, genai.NewContentFromParts(parts, genai.RoleUser))
			if resp, err = cl.Models.GenerateContent(ctx, "up/model", history, weatherConfig()); err != nil || resp.Text() == "" {
				t.Fatalf("final answer: %v %v", resp, err)
			}
			up.onlyKey(t, c.key)
			first, second := up.bodies[0], up.bodies[1]
			switch c.typ {
			case "openai":
				msgs := first["messages"].([]any)
				if sys := msgs[0].(map[string]any); sys["role"] != "system" || !strings.Contains(sys["content"].(string), "weather bot") {
					t.Fatalf("system: %v", msgs[0])
				}
				var ids []any
				for _, m := range second["messages"].([]any) {
					if mm := m.(map[string]any); mm["role"] == "tool" {
						ids = append(ids, mm["tool_call_id"])
					}
				}
				if len(ids) != 2 || ids[0] != calls[0].ID || ids[1] != calls[1].ID {
					t.Fatalf("tool results upstream: %v", ids)
				}
			case "anthropic":
				sys, _ := json.Marshal(first["system"])
				if !strings.Contains(string(sys), "weather bot") {
					t.Fatalf("system: %s", sys)
				}
				msgs := second["messages"].([]any)
				blocks := msgs[len(msgs)-1].(map[string]any)["content"].([]any)
				if len(blocks) != 2 || blocks[0].(map[string]any)["tool_use_id"] != calls[0].ID || blocks[1].(map[string]any)["tool_use_id"] != calls[1].ID {
					t.Fatalf("tool results upstream: %v", blocks)
				}
			}
		})
	}
}

// CountTokens (estimated by the gateway for an OpenAI upstream, which
// has no count endpoint) and EmbedContent with several contents
// (batchEmbedContents) against Gemini and OpenAI upstreams.
func TestGeminiSDKCountTokensAndEmbed(t *testing.T) {
	gm := newRecorder(t, func(w http.ResponseWriter, r *http.Request, body map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"embeddings":[{"values":[1,2]},{"values":[3,4]},{"values":[5,6]}]}`))
	})
	oa := newRecorder(t, func(w http.ResponseWriter, r *http.Request, body map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"object":"list","data":[{"object":"embedding","index":2,"embedding":[5,6]},{"object":"embedding","index":0,"embedding":[1,2]},{"object":"embedding","index":1,"embedding":[3,4]}],"model":"m","usage":{"prompt_tokens":6,"total_tokens":6}}`))
	})
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{
		{ID: "g", Type: "gemini", BaseURL: gm.URL, APIKeys: []config.Secret{"gk"}},
		{ID: "oa", Type: "openai", BaseURL: oa.URL, APIKeys: []config.Secret{"ok"}},
	}})
	ctx := context.Background()
	contents := []*genai.Content{genai.NewContentFromText("first", genai.RoleUser), genai.NewContentFromText("second", genai.RoleUser), genai.NewContentFromText("third", genai.RoleUser)}
	for _, version := range []string{"v1beta", "v1"} {
		c := geminiClient(t, gw.URL, version)
		ct, err := c.Models.CountTokens(ctx, "oa/gpt-4o", []*genai.Content{genai.NewContentFromText(strings.Repeat("word ", 40), genai.RoleUser)}, nil)
		if err != nil || ct.TotalTokens < 40 || ct.TotalTokens > 80 {
			t.Fatalf("%s count tokens: %+v %v", version, ct, err)
		}
		for _, model := range []string{"g/text-embedding-004", "oa/text-embedding-3-small"} {
			dims := int32(2)
			res, err := c.Models.EmbedContent(ctx, model, contents, &genai.EmbedContentConfig{OutputDimensionality: &dims})
			if err != nil {
				t.Fatalf("%s %s: %v", version, model, err)
			}
			if len(res.Embeddings) != 3 || res.Embeddings[0].Values[0] != 1 || res.Embeddings[2].Values[1] != 6 {
				t.Fatalf("%s %s: embeddings %+v", version, model, res.Embeddings)
			}
		}
	}
	gm.onlyKey(t, "goog=gk x-api-key= auth=")
	oa.onlyKey(t, "goog= x-api-key= auth=Bearer ok")
	reqs := gm.bodies[0]["requests"].([]any)
	if gm.paths[0] != "/v1beta/models/text-embedding-004:batchEmbedContents" || len(reqs) != 3 || reqs[0].(map[string]any)["outputDimensionality"] != 2.0 {
		t.Fatalf("gemini embed upstream: %s %v", gm.paths[0], gm.bodies[0])
	}
	if in := oa.bodies[0]["input"].([]any); len(in) != 3 || in[0] != "first" || oa.bodies[0]["dimensions"] != 2.0 {
		t.Fatalf("openai embed upstream: %v", oa.bodies[0])
	}
}

// The model list and get, errors in Google's shape, a mid-stream error,
// and the JSON-array stream form without alt=sse.
func TestGeminiModelsErrorsAndArrayStream(t *testing.T) {
	up := newRecorder(t, replyGemini(t, "gemini/testdata/streams/error_midstream.sse", "gemini/testdata/responses/text.json"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "g", Type: "gemini", BaseURL: up.URL, APIKeys: []config.Secret{"k"}, Models: []string{"gemini-2.5-flash"}}}})
	c := geminiClient(t, gw.URL, "v1beta")
	ctx := context.Background()
	var listed []string
	for m, err := range c.Models.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, m.Name)
	}
	if len(listed) != 1 || listed[0] != "models/g/gemini-2.5-flash" {
		t.Fatalf("listed %v", listed)
	}
	if m, err := c.Models.Get(ctx, "g/gemini-2.5-flash", nil); err != nil || m.Name != "models/g/gemini-2.5-flash" {
		t.Fatalf("get: %+v %v", m, err)
	}
	_, err := c.Models.Get(ctx, "g/nope", nil)
	var apiErr genai.APIError
	if !asErr(err, &apiErr) || apiErr.Code != 404 || apiErr.Status != "NOT_FOUND" {
		t.Fatalf("unknown model get: %v", err)
	}
	_, err = c.Models.GenerateContent(ctx, "nope", weatherQuestion, nil)
	if !asErr(err, &apiErr) || apiErr.Code != 404 {
		t.Fatalf("unknown model: %v", err)
	}
	wrong, _ := genai.NewClient(ctx, &genai.ClientConfig{APIKey: "wrong", Backend: genai.BackendGeminiAPI, HTTPOptions: genai.HTTPOptions{BaseURL: gw.URL}})
	_, err = wrong.Models.GenerateContent(ctx, "g/gemini-2.5-flash", weatherQuestion, nil)
	if !asErr(err, &apiErr) || apiErr.Code != 401 || apiErr.Status != "UNAUTHENTICATED" {
		t.Fatalf("wrong gateway key: %v", err)
	}
	// Text reached the client before the upstream failed: the error is
	// surfaced in the stream, not retried.
	var text string
	var streamErr error
	for chunk, err := range c.Models.GenerateContentStream(ctx, "g/gemini-2.5-flash", weatherQuestion, nil) {
		if err != nil {
			streamErr = err
			break
		}
		text += chunk.Text()
	}
	if text != "Paris is 18°C" || streamErr == nil || !strings.Contains(streamErr.Error(), "overloaded") {
		t.Fatalf("mid-stream error: text %q err %v", text, streamErr)
	}
	// Without alt=sse the stream is one JSON array.
	body := `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1beta/models/models/g/gemini-2.5-flash:streamGenerateContent", strings.NewReader(body))
	req.Header.Set("x-goog-api-key", gatewayKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var chunks []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&chunks); err != nil || res.Header.Get("Content-Type") != "application/json" || len(chunks) != 2 || chunks[1]["error"] == nil {
		t.Fatalf("array stream: %v %s %v", err, res.Header.Get("Content-Type"), chunks)
	}
	// Bad input is a 400 in Google's shape, naming the field.
	req, _ = http.NewRequest(http.MethodPost, gw.URL+"/v1/models/g/gemini-2.5-flash:generateContent", strings.NewReader(`{"contents":[{"role":"wizard","parts":[]}]}`))
	req.Header.Set("x-goog-api-key", gatewayKey)
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	var eb struct {
		Error struct {
			Code    int
			Message string
			Status  string
		}
	}
	if json.NewDecoder(res2.Body).Decode(&eb); res2.StatusCode != 400 || eb.Error.Status != "INVALID_ARGUMENT" || !strings.Contains(eb.Error.Message, "contents[0].role") {
		t.Fatalf("bad input: %d %+v", res2.StatusCode, eb)
	}
}
