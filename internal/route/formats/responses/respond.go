package responses

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// usageOut converts canonical usage: Responses input_tokens includes the
// cached (and cache-written) tokens, which canonical InputTokens excludes.
func usageOut(u llm.Usage) *Usage {
	return &Usage{InputTokens: u.PromptTokens(), InputTokensDetails: InputTokensDetails{CachedTokens: u.CacheReadTokens},
		OutputTokens: u.OutputTokens, OutputTokensDetails: OutputTokensDetails{ReasoningTokens: u.ReasoningTokens},
		TotalTokens: u.TotalTokens()}
}

// usageIn is the inverse of usageOut.
func usageIn(u *Usage) llm.Usage {
	if u == nil {
		return llm.Usage{}
	}
	cached := max(0, u.InputTokensDetails.CachedTokens)
	return llm.Usage{InputTokens: max(0, u.InputTokens-cached), CacheReadTokens: cached, OutputTokens: u.OutputTokens,
		ReasoningTokens: u.OutputTokensDetails.ReasoningTokens}
}

// itemID names the output item at index n of response respID; the same
// response always gets the same item ids, streamed or not.
func itemID(prefix, respID string, n int) string {
	return prefix + "_" + strings.TrimPrefix(respID, "resp_") + "_" + strconv.Itoa(n)
}

// itemKind is the output item a canonical part becomes ("" for parts a
// Responses output cannot hold: media, redacted thinking, tool results).
func itemKind(p llm.PartType) string {
	switch p {
	case llm.PartText:
		return "message"
	case llm.PartThinking:
		return "reasoning"
	case llm.PartToolCall:
		return "function_call"
	}
	return ""
}

func messageItem(id, status, text string) Item {
	content, _ := json.Marshal([]ContentPart{{Type: "output_text", Text: text}})
	return Item{Type: "message", ID: id, Status: status, Role: "assistant", Content: content}
}

func reasoningItem(id, text, signature string) Item {
	it := Item{Type: "reasoning", ID: id, Summary: []SummaryPart{}, EncryptedContent: signature}
	if text != "" {
		it.Summary = []SummaryPart{{Type: "summary_text", Text: text}}
	}
	return it
}

func callItem(id, status string, tc *llm.ToolCall, args string) Item {
	return Item{Type: "function_call", ID: id, Status: status, CallID: tc.ID, Name: tc.Name, Arguments: args}
}

// outputItems renders canonical content as output items.
func outputItems(respID string, content []llm.Part) []Item {
	out := []Item{}
	for _, p := range content {
		n := len(out)
		switch itemKind(p.Type) {
		case "message":
			out = append(out, messageItem(itemID("msg", respID, n), "completed", p.Text))
		case "reasoning":
			out = append(out, reasoningItem(itemID("rs", respID, n), p.Text, p.Signature))
		case "function_call":
			if p.ToolCall != nil {
				out = append(out, callItem(itemID("fc", respID, n), "completed", p.ToolCall, string(llm.NormalizeArguments(string(p.ToolCall.Arguments)))))
			}
		}
	}
	return out
}

// finalStatus maps a stop reason to a response status and the
// incomplete_details it needs.
func finalStatus(s llm.StopReason) (string, *IncompleteDetails) {
	switch s {
	case llm.StopMaxTokens:
		return "incomplete", &IncompleteDetails{Reason: "max_output_tokens"}
	case llm.StopContentFilter:
		return "incomplete", &IncompleteDetails{Reason: "content_filter"}
	}
	return "completed", nil
}

// Complete fills the response object meta (the request's echo with ID,
// CreatedAt and Model set by the caller) with a canonical response: its
// output items, status and usage. The upstream's model name, when known,
// replaces meta.Model.
func Complete(meta Response, r *llm.Response) Response {
	out := meta
	out.Object = "response"
	if r.Model != "" {
		out.Model = r.Model
	}
	out.Output = outputItems(meta.ID, r.Content)
	out.Status, out.IncompleteDetails = finalStatus(r.StopReason)
	out.Usage = usageOut(r.Usage)
	return out
}

// EncodeResponse renders a canonical response as the response object
// (see Complete).
func EncodeResponse(meta Response, r *llm.Response) ([]byte, error) {
	return json.Marshal(Complete(meta, r))
}

// paramCodes names the request field an error code is about.
var paramCodes = map[string]string{"previous_response_not_found": "previous_response_id"}

// fieldPrefix matches the field name the gateway's 400 messages start with.
var fieldPrefix = regexp.MustCompile(`^([a-z_][a-z0-9_.\[\]]*): `)

// errorType is OpenAI's error type for e.
func errorType(e *llm.Error) string {
	switch e.Type {
	case llm.ErrInvalidRequest, llm.ErrNotFound, llm.ErrRequestTooLarge:
		return "invalid_request_error"
	case llm.ErrAuthentication:
		return "authentication_error"
	case llm.ErrPermission:
		return "permission_error"
	case llm.ErrRateLimit:
		return "rate_limit_error"
	}
	return "server_error"
}

// EncodeError renders an error in OpenAI's envelope
// {"error":{"message","type","param","code"}}. param is the request field
// a 400 is about, when known.
func EncodeError(e *llm.Error) (int, []byte) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	d := ErrorDetail{Message: e.Message, Type: errorType(e)}
	if e.Code != "" {
		c := e.Code
		d.Code = &c
	}
	if p, ok := paramCodes[e.Code]; ok {
		d.Param = &p
	} else if e.Type == llm.ErrInvalidRequest {
		if m := fieldPrefix.FindStringSubmatch(e.Message); m != nil {
			p := m[1]
			d.Param = &p
		}
	}
	b, _ := json.Marshal(ErrorBody{Error: d})
	return status, b
}

// streamErrorCode is the code of a failed response or an error event.
func streamErrorCode(e *llm.Error) string {
	if e.Code != "" {
		return e.Code
	}
	switch e.Type {
	case llm.ErrRateLimit:
		return "rate_limit_exceeded"
	case llm.ErrInvalidRequest:
		return "invalid_prompt"
	}
	return "server_error"
}
