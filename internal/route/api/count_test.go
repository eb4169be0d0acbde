package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/api"
	"github.com/omniedge/omni/internal/route/routetest"
)

// counting answers token counts like Anthropic (/v1/messages/count_tokens)
// and Gemini (:countTokens) do, with n; anything else is a 500.
func counting(n string) func(http.ResponseWriter, *http.Request, map[string]any, int) {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/messages/count_tokens":
			w.Write([]byte(`{"input_tokens":` + n + `}`))
		case strings.HasSuffix(r.URL.Path, ":countTokens"):
			w.Write([]byte(`{"totalTokens":` + n + `,"promptTokensDetails":[{"modality":"TEXT","tokenCount":` + n + `}]}`))
		default:
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{}`))
		}
	}
}

func countParams(model string) asdk.MessageCountTokensParams {
	return asdk.MessageCountTokensParams{
		Model:    asdk.Model(model),
		System:   asdk.MessageCountTokensParamsSystemUnion{OfTextBlockArray: []asdk.TextBlockParam{{Text: "You are a weather bot."}}},
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("Weather in Paris?"))},
		Tools:    []asdk.MessageCountTokensToolUnionParam{{OfTool: weatherTool.OfTool}},
	}
}

// sdkCount counts through the Anthropic SDK and returns the count and
// the token-count source header.
func sdkCount(t *testing.T, c asdk.Client, model string) (int64, string) {
	t.Helper()
	var resp *http.Response
	n, err := c.Messages.CountTokens(context.Background(), countParams(model), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("count %s: %v", model, err)
	}
	return n.InputTokens, resp.Header.Get(api.HeaderTokenCount)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Anthropic and Gemini upstreams count with the model's own tokenizer:
// both dialects' counts are asked of them, in the provider's own count
// format for the target model, and the answer says it is the upstream's.
// An OpenAI upstream has no count endpoint: the count is estimated, and
// says so.
func TestCountTokensAskTheUpstream(t *testing.T) {
	an := newRecorder(t, counting("41"))
	gm := newRecorder(t, counting("41"))
	oa := newRecorder(t, counting("41"))
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "an", Type: "anthropic", BaseURL: an.URL, APIKeys: []config.Secret{"sk-ant"}},
			{ID: "g", Type: "gemini", BaseURL: gm.URL, APIKeys: []config.Secret{"gk"}},
			{ID: "oa", Type: "openai", BaseURL: oa.URL, APIKeys: []config.Secret{"ok"}},
		},
		Aliases: map[string]string{"sonnet": "an/claude-sonnet-4-5"},
		Combos: []config.RouteCombo{
			{Name: "openai-first", Strategy: "priority", Targets: []string{"oa/gpt-4o", "an/claude-sonnet-4-5"}},
			{Name: "gemini-first", Strategy: "round-robin", Targets: []string{"g/gemini-2.5-flash", "oa/gpt-4o"}},
		},
	})
	ac := anthropicClient(gw)

	// Anthropic client → Anthropic upstream.
	if n, src := sdkCount(t, ac, "an/claude-sonnet-4-5"); n != 41 || src != "upstream" {
		t.Fatalf("anthropic → anthropic: %d, %s %q", n, api.HeaderTokenCount, src)
	}
	if an.paths[0] != "/v1/messages/count_tokens" {
		t.Fatalf("anthropic upstream path %s", an.paths[0])
	}
	body := an.bodies[0]
	msgs := jsonOf(t, body["messages"])
	if body["model"] != "claude-sonnet-4-5" || !strings.Contains(jsonOf(t, body["system"]), "You are a weather bot.") ||
		!strings.Contains(msgs, `"role":"user"`) || !strings.Contains(msgs, "Weather in Paris?") ||
		!strings.Contains(jsonOf(t, body["tools"]), `"name":"get_weather"`) {
		t.Fatalf("anthropic count body: %v", body)
	}
	for _, k := range []string{"max_tokens", "stream", "temperature"} {
		if _, ok := body[k]; ok {
			t.Fatalf("anthropic count body has %s: %v", k, body)
		}
	}

	// Anthropic client → Gemini upstream: system and tools make it a
	// generateContentRequest naming the target model.
	if n, src := sdkCount(t, ac, "g/gemini-2.5-flash"); n != 41 || src != "upstream" {
		t.Fatalf("anthropic → gemini: %d %q", n, src)
	}
	if gm.paths[0] != "/v1beta/models/gemini-2.5-flash:countTokens" {
		t.Fatalf("gemini upstream path %s", gm.paths[0])
	}
	gcr, _ := gm.bodies[0]["generateContentRequest"].(map[string]any)
	if gcr == nil || gcr["model"] != "models/gemini-2.5-flash" || gm.bodies[0]["contents"] != nil ||
		!strings.Contains(jsonOf(t, gcr["systemInstruction"]), "You are a weather bot.") ||
		!strings.Contains(jsonOf(t, gcr["contents"]), "Weather in Paris?") ||
		!strings.Contains(jsonOf(t, gcr["tools"]), `"functionDeclarations":[{"description":"Current weather for a location","name":"get_weather"`) || gcr["generationConfig"] != nil {
		t.Fatalf("gemini count body: %v", gm.bodies[0])
	}

	// Gemini client → Gemini and Anthropic upstreams.
	for _, version := range []string{"v1beta", "v1"} {
		gc := geminiClient(t, gw.URL, version)
		for _, model := range []string{"g/gemini-2.5-flash", "an/claude-sonnet-4-5", "sonnet"} {
			ct, err := gc.Models.CountTokens(context.Background(), model, []*genai.Content{genai.NewContentFromText("Weather in Oslo?", genai.RoleUser)}, nil)
			if err != nil || ct.TotalTokens != 41 || ct.SDKHTTPResponse == nil || ct.SDKHTTPResponse.Headers.Get(api.HeaderTokenCount) != "upstream" {
				t.Fatalf("%s gemini → %s: %+v %v", version, model, ct, err)
			}
		}
	}
	if last := gm.bodies[len(gm.bodies)-1]; jsonOf(t, last) != `{"contents":[{"parts":[{"text":"Weather in Oslo?"}],"role":"user"}]}` {
		t.Fatalf("gemini count body for turns only: %s", jsonOf(t, last))
	}
	if last := an.bodies[len(an.bodies)-1]; last["model"] != "claude-sonnet-4-5" || !strings.Contains(jsonOf(t, last["messages"]), "Weather in Oslo?") {
		t.Fatalf("anthropic count body from a gemini client: %v", last)
	}

	// A Gemini client's generateContentRequest (raw HTTP): the target's
	// model name replaces the client's.
	r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1beta/models/g/gemini-2.5-flash:countTokens",
		`{"generateContentRequest":{"model":"models/g/gemini-2.5-flash","contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"be brief"}]}}}`,
		"x-goog-api-key", gatewayKey)
	if r.Status != http.StatusOK || r.Header.Get(api.HeaderTokenCount) != "upstream" || !strings.Contains(string(r.Body), `"totalTokens":41`) {
		t.Fatalf("raw countTokens: %d %v %s", r.Status, r.Header, r.Body)
	}
	gcr, _ = gm.bodies[len(gm.bodies)-1]["generateContentRequest"].(map[string]any)
	if gcr == nil || gcr["model"] != "models/gemini-2.5-flash" || !strings.Contains(jsonOf(t, gcr["systemInstruction"]), "be brief") {
		t.Fatalf("gemini count body from generateContentRequest: %v", gm.bodies[len(gm.bodies)-1])
	}

	// Combos count on their first target; an OpenAI target is estimated
	// and its upstream never asked.
	if n, src := sdkCount(t, ac, "gemini-first"); n != 41 || src != "upstream" {
		t.Fatalf("combo with a Gemini first target: %d %q", n, src)
	}
	calls := len(an.bodies)
	for _, model := range []string{"oa/gpt-4o", "openai-first"} {
		n, src := sdkCount(t, ac, model)
		if n == 41 || n <= 0 || src != "estimated" {
			t.Fatalf("%s: %d %q, want an estimate", model, n, src)
		}
	}
	ct, err := geminiClient(t, gw.URL, "v1beta").Models.CountTokens(context.Background(), "oa/gpt-4o", genai.Text("Weather in Oslo?"), nil)
	if err != nil || ct.TotalTokens == 41 || ct.SDKHTTPResponse.Headers.Get(api.HeaderTokenCount) != "estimated" {
		t.Fatalf("gemini → openai: %+v %v", ct, err)
	}
	if len(oa.bodies) != 0 || len(an.bodies) != calls {
		t.Fatalf("estimated counts reached upstreams: openai %d, anthropic %d more", len(oa.bodies), len(an.bodies)-calls)
	}
	an.onlyKey(t, "goog= x-api-key=sk-ant auth=")
	gm.onlyKey(t, "goog=gk x-api-key= auth=")

	// Unknown models are a 404, as for chat.
	var e *asdk.Error
	if _, err := ac.Messages.CountTokens(context.Background(), countParams("nope/x")); !asErr(err, &e) || e.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown model: %v", err)
	}
}

// An upstream count that fails is estimated instead — after every
// connection when another credential may answer (5xx, 429, 401), at once
// when none would (404: an Anthropic-compatible upstream without the
// endpoint; an answer that is no count; one larger than the configured
// cap) — except a refusal of the request itself, which the client sees.
func TestCountTokensUpstreamFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		typ       string
		status    int
		body      string
		calls     int // upstream requests made (two connections)
		wantError int // 0: an estimate
	}{
		{"anthropic 500", "anthropic", 500, `{"type":"error","error":{"type":"api_error","message":"boom"}}`, 2, 0},
		{"anthropic 429", "anthropic", 429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, 2, 0},
		{"anthropic 401", "anthropic", 401, `{"type":"error","error":{"type":"authentication_error","message":"bad key"}}`, 2, 0},
		{"anthropic 404", "anthropic", 404, `{"type":"error","error":{"type":"not_found_error","message":"Not found"}}`, 1, 0},
		{"anthropic no count", "anthropic", 200, `{"tokens":41}`, 2, 0},
		{"anthropic too large", "anthropic", 200, `{"input_tokens":41,"pad":"` + strings.Repeat("x", 8192) + `"}`, 2, 0},
		{"anthropic 400", "anthropic", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate"}}`, 1, 400},
		{"gemini 503", "gemini", 503, `{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}`, 2, 0},
		{"gemini no count", "gemini", 200, `{"candidates":[]}`, 2, 0},
		{"gemini 400", "gemini", 400, `{"error":{"code":400,"message":"contents: empty text","status":"INVALID_ARGUMENT"}}`, 1, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRecorder(t, func(w http.ResponseWriter, _ *http.Request, _ map[string]any, _ int) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			gw := gateway(t, config.RouteConfig{UpstreamMaxBody: 4096, Providers: []config.RouteProvider{
				{ID: "p", Type: tc.typ, BaseURL: up.URL, APIKeys: []config.Secret{"k1", "k2"}}}})
			r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/messages/count_tokens",
				`{"model":"p/m1","system":"be brief","messages":[{"role":"user","content":"Weather in Paris?"}]}`,
				"x-api-key", gatewayKey, "anthropic-version", "2023-06-01")
			if tc.wantError != 0 {
				var got struct {
					Type  string `json:"type"`
					Error struct {
						Type    string `json:"type"`
						Message string `json:"message"`
					} `json:"error"`
				}
				_ = json.Unmarshal(r.Body, &got)
				if r.Status != tc.wantError || got.Type != "error" || got.Error.Type != "invalid_request_error" || r.Header.Get(api.HeaderTokenCount) != "" {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			} else {
				var got struct {
					InputTokens *int `json:"input_tokens"`
				}
				_ = json.Unmarshal(r.Body, &got)
				if r.Status != http.StatusOK || got.InputTokens == nil || *got.InputTokens == 41 || *got.InputTokens <= 0 ||
					r.Header.Get(api.HeaderTokenCount) != "estimated" {
					t.Fatalf("%d %v %s, want an estimate", r.Status, r.Header, r.Body)
				}
			}
			if n := len(up.bodies); n != tc.calls {
				t.Fatalf("%d upstream count requests, want %d", n, tc.calls)
			}
		})
	}
}
