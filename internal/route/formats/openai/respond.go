package openai

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// finishReason maps a canonical stop reason to OpenAI's.
func finishReason(s llm.StopReason) string {
	switch s {
	case llm.StopMaxTokens:
		return "length"
	case llm.StopToolUse:
		return "tool_calls"
	case llm.StopContentFilter, llm.StopRefusal:
		return "content_filter"
	}
	return "stop"
}

func usageOut(u llm.Usage) *Usage {
	out := &Usage{PromptTokens: u.PromptTokens(), CompletionTokens: u.OutputTokens, TotalTokens: u.TotalTokens(),
		PromptTokensDetails: &PromptTokensDetails{CachedTokens: u.CacheReadTokens}}
	if u.ReasoningTokens > 0 {
		out.CompletionTokensDetails = &CompletionTokensDetails{ReasoningTokens: u.ReasoningTokens}
	}
	return out
}

func responseID(id string) string {
	if strings.HasPrefix(id, "chatcmpl-") {
		return id
	}
	return "chatcmpl-" + id
}

// EncodeResponse renders a canonical response as a chat.completion.
func EncodeResponse(r *llm.Response) ([]byte, error) {
	msg := &RespMessage{Role: "assistant"}
	var text, thinking strings.Builder
	for _, p := range r.Content {
		switch p.Type {
		case llm.PartText:
			text.WriteString(p.Text)
		case llm.PartThinking:
			thinking.WriteString(p.Text)
		case llm.PartToolCall:
			msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: p.ToolCall.ID, Type: "function",
				Function: FunctionCall{Name: p.ToolCall.Name, Arguments: string(llm.NormalizeArguments(string(p.ToolCall.Arguments)))}})
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		t := text.String()
		msg.Content = &t
	}
	if thinking.Len() > 0 {
		t := thinking.String()
		msg.ReasoningContent = &t
	}
	fr := finishReason(r.StopReason)
	if len(msg.ToolCalls) > 0 && fr == "stop" {
		fr = "tool_calls"
	}
	return json.Marshal(ChatResponse{ID: responseID(r.ID), Object: "chat.completion", Created: r.Created.Unix(), Model: r.Model,
		Choices: []Choice{{Message: msg, FinishReason: &fr}}, Usage: usageOut(r.Usage)})
}

// EncodeError renders an error in OpenAI's shape.
func EncodeError(e *llm.Error) (int, []byte) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	typ := "server_error"
	switch e.Type {
	case llm.ErrInvalidRequest, llm.ErrNotFound, llm.ErrRequestTooLarge:
		typ = "invalid_request_error"
	case llm.ErrAuthentication:
		typ = "authentication_error"
	case llm.ErrPermission:
		typ = "permission_error"
	case llm.ErrRateLimit:
		typ = "rate_limit_error"
	}
	d := ErrorDetail{Message: e.Message, Type: typ}
	if e.Code != "" {
		c := e.Code
		d.Code = &c
	}
	b, _ := json.Marshal(ErrorBody{Error: d})
	return status, b
}

// EncodeModerationResponse renders verdicts as OpenAI answers them,
// named after the model the client asked for (or the upstream's name
// when it asked for none).
func EncodeModerationResponse(model string, r *llm.ModerationResponse) ([]byte, error) {
	if model == "" {
		model = r.Model
	}
	out := ModerationResponse{ID: r.ID, Model: model, Results: make([]ModerationResult, len(r.Results))}
	for i, v := range r.Results {
		out.Results[i] = ModerationResult{Flagged: v.Flagged, Categories: v.Categories, CategoryScores: v.Scores,
			CategoryAppliedInputTypes: v.InputTypes}
		if out.Results[i].Categories == nil {
			out.Results[i].Categories = map[string]bool{}
		}
		if out.Results[i].CategoryScores == nil {
			out.Results[i].CategoryScores = map[string]float64{}
		}
	}
	return json.Marshal(out)
}
