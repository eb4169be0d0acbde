package prompting_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	asdk "github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// Through the official clients: an Anthropic SDK client's request gets
// the global prompt before its own, and an OpenAI SDK client's
// reasoning_effort high becomes the configured budget at an Anthropic
// upstream.
func TestSettingsThroughTheOfficialClients(t *testing.T) {
	e, u := gateway(t)
	_, raw := e.CreateKey(map[string]any{"name": "team"})
	e.Want(http.StatusOK, "PUT", "/api/settings/system-prompt", map[string]any{"enabled": true, "prompt": "GLOBAL-RULES"})
	e.Want(http.StatusOK, "PUT", "/api/settings/thinking-budget", map[string]any{"efforts": map[string]int{"high": 24000}})
	ctx := context.Background()

	ac := asdk.NewClient(aoption.WithBaseURL(e.Srv.URL), aoption.WithAPIKey(raw), aoption.WithMaxRetries(0))
	if _, err := ac.Messages.New(ctx, asdk.MessageNewParams{Model: "oa/gpt-x", MaxTokens: 64,
		System:   []asdk.TextBlockParam{{Text: "client-sys"}},
		Messages: []asdk.MessageParam{asdk.NewUserMessage(asdk.NewTextBlock("hello"))}}); err != nil {
		t.Fatal(err)
	}
	if body := u.last(t); !strings.Contains(body, "GLOBAL-RULES") || strings.Index(body, "GLOBAL-RULES") > strings.Index(body, "client-sys") {
		t.Fatalf("the upstream received %s", body)
	}

	oc := openai.NewClient(ooption.WithBaseURL(e.Srv.URL+"/v1/"), ooption.WithAPIKey(raw), ooption.WithMaxRetries(0))
	if _, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "an/claude-x", ReasoningEffort: shared.ReasoningEffortHigh,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}); err != nil {
		t.Fatal(err)
	}
	if got := thinking(t, u.last(t)); got != 24000 {
		t.Fatalf("the Anthropic upstream's budget is %d, want 24000: %s", got, u.last(t))
	}
}
