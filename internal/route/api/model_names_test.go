package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	oapi "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"google.golang.org/genai"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/routetest"
)

// Model names are at most 256 bytes of printable text. Every dialect
// refuses others at decode with a 400 in its own error shape, before
// they reach the router, the gates or the usage records.
func TestModelNamesAreCheckedInEveryDialect(t *testing.T) {
	up := newUpstream(t, replyStatus(http.StatusInternalServerError, `{}`))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	ctx := context.Background()
	oc := openAIClient(gw.URL)
	ac := anthropicClient(gw)
	gc := geminiClient(t, gw.URL, "")
	olc := ollamaClient(t, gw.URL, gatewayKey)
	hello := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	amsgs := []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hi"))}
	f := false

	dialects := []struct {
		name string
		call func(model string) error
		bad  func(error) bool // a 400 in the dialect's shape about the model
	}{
		{"openai chat", func(m string) error {
			_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: m, Messages: hello})
			return err
		}, openAI400},
		{"openai embeddings", func(m string) error {
			_, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: m, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
			return err
		}, openAI400},
		{"responses", func(m string) error {
			_, err := oc.Responses.New(ctx, responses.ResponseNewParams{Model: m, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")}})
			return err
		}, openAI400},
		{"anthropic messages", func(m string) error {
			_, err := ac.Messages.New(ctx, asdk.MessageNewParams{Model: asdk.Model(m), MaxTokens: 10, Messages: amsgs})
			return err
		}, anthropic400},
		{"anthropic count_tokens", func(m string) error {
			_, err := ac.Messages.CountTokens(ctx, asdk.MessageCountTokensParams{Model: asdk.Model(m), Messages: amsgs})
			return err
		}, anthropic400},
		{"gemini generateContent", func(m string) error {
			_, err := gc.Models.GenerateContent(ctx, m, genai.Text("hi"), nil)
			return err
		}, gemini400},
		{"gemini embedContent", func(m string) error {
			_, err := gc.Models.EmbedContent(ctx, m, genai.Text("hi"), nil)
			return err
		}, gemini400},
		{"ollama chat", func(m string) error {
			return olc.Chat(ctx, &oapi.ChatRequest{Model: m, Stream: &f, Messages: []oapi.Message{{Role: "user", Content: "hi"}}},
				func(oapi.ChatResponse) error { return nil })
		}, ollama400},
		{"ollama embed", func(m string) error {
			_, err := olc.Embed(ctx, &oapi.EmbedRequest{Model: m, Input: "hi"})
			return err
		}, ollama400},
	}
	names := map[string]string{
		"257 bytes":         "oa/" + strings.Repeat("m", 254),
		"a megabyte":        "oa/" + strings.Repeat("m", 1<<20),
		"a control char":    "oa/gpt\x01-4o",
		"a newline":         "oa/gpt-4o\nX-Injected: 1",
		"a bidi override":   "oa/gpt-\u202e4o",
		"only spaces":       "   ",
		"a zero-width char": "oa/gpt\u200b-4o",
	}
	for _, d := range dialects {
		for what, name := range names {
			if d.name == "gemini generateContent" || d.name == "gemini embedContent" {
				if what == "a megabyte" {
					continue // the URL itself is refused by the HTTP server first
				}
			}
			err := d.call(name)
			if !d.bad(err) {
				t.Errorf("%s, model name with %s: %v, want a 400 about the model name", d.name, what, err)
			}
		}
		// 256 bytes is a name like any other: unknown here, so a 404.
		if err := d.call("nope/" + strings.Repeat("m", 251)); d.bad(err) || err == nil {
			t.Errorf("%s, 256-byte model name: %v, want it accepted", d.name, err)
		}
	}
	if up.calls() != 0 {
		t.Fatalf("%d requests reached the upstream", up.calls())
	}

	// Raw bytes a client may send that the SDKs would not: invalid UTF-8,
	// an escaped control character in Gemini's URL.
	r := routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1/chat/completions",
		"{\"model\":\"oa/\xff\xfe\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "Authorization", "Bearer "+gatewayKey)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "invalid_request_error") {
		t.Errorf("invalid UTF-8 model name: %d %s", r.Status, r.Body)
	}
	r = routetest.Send(t, http.DefaultClient, "POST", gw.URL+"/v1beta/models/oa%2Fgpt%0A4o:generateContent",
		`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, "x-goog-api-key", gatewayKey)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "INVALID_ARGUMENT") {
		t.Errorf("Gemini model name with a newline: %d %s", r.Status, r.Body)
	}
}

func openAI400(err error) bool {
	var e *openai.Error
	return errors.As(err, &e) && e.StatusCode == http.StatusBadRequest && e.Type == "invalid_request_error" && strings.HasPrefix(e.Message, "model")
}

func anthropic400(err error) bool {
	var e *asdk.Error
	return errors.As(err, &e) && e.StatusCode == http.StatusBadRequest && strings.Contains(e.RawJSON(), `"invalid_request_error"`) &&
		strings.Contains(e.RawJSON(), `"message":"model`)
}

func gemini400(err error) bool {
	var e genai.APIError
	return errors.As(err, &e) && e.Code == http.StatusBadRequest && e.Status == "INVALID_ARGUMENT" && strings.HasPrefix(e.Message, "model")
}

func ollama400(err error) bool {
	var e oapi.StatusError
	return errors.As(err, &e) && e.StatusCode == http.StatusBadRequest && strings.HasPrefix(e.ErrorMessage, "model")
}
