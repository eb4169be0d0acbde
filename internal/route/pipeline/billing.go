package pipeline

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// Billed extras: service tiers priced at most at the standard price,
// tools the client runs itself, and anthropic-beta features billed at
// premium or per use.
var (
	standardTiers = map[string]bool{"": true, "auto": true, "default": true, "flex": true, "standard_only": true}
	clientTools   = map[string]bool{"function": true, "custom": true, "local_shell": true, "shell": true,
		"apply_patch": true, "computer_use_preview": true}
	billedBetas = []string{"context-1m-", "extended-cache-ttl-", "code-execution-", "web-fetch-", "web-search-", "skills-"}
)

// billing reads what multiplies a request's price: the number of answers
// (n, at most 128) and, when the request asks for anything billed at
// prices the gateway does not know, what that is. anthropicClient: the
// client spoke Anthropic Messages, whose anthropic-beta flags (betas, the
// header's values) are sent upstream.
func billing(req *llm.Request, betas []string, anthropicClient bool) (choices int, unpriced string) {
	choices = 1
	if raw, ok := req.Extra["n"]; ok {
		var n int
		if json.Unmarshal(raw, &n) == nil && n > 1 {
			choices = min(n, 128)
		}
	}
	if raw, ok := req.Extra["service_tier"]; ok {
		var tier string
		if json.Unmarshal(raw, &tier) != nil || !standardTiers[tier] {
			return choices, "service_tier " + strconv.Quote(truncated(tier, 32))
		}
	}
	if _, ok := req.Extra["web_search_options"]; ok {
		return choices, "web_search_options (web search)"
	}
	if raw, ok := req.Extra["tools"]; ok { // built-in tools (Responses) or non-function tools (Gemini)
		var tools []map[string]json.RawMessage
		if json.Unmarshal(raw, &tools) != nil {
			return choices, "built-in tools"
		}
		for _, t := range tools {
			if v, ok := t["type"]; ok {
				var typ string
				if json.Unmarshal(v, &typ) != nil || !clientTools[typ] {
					return choices, "the built-in tool " + strconv.Quote(truncated(typ, 64))
				}
				continue
			}
			for k := range t { // Gemini names a tool by its key: googleSearch, codeExecution …
				return choices, "the built-in tool " + strconv.Quote(truncated(k, 64))
			}
		}
	}
	if raw, ok := req.Extra["background"]; ok && string(raw) == "true" {
		return choices, "background mode"
	}
	if raw, ok := req.Extra["modalities"]; ok && strings.Contains(string(raw), "audio") {
		return choices, "audio output"
	}
	if !anthropicClient {
		return choices, ""
	}
	for _, h := range betas {
		for flag := range strings.SplitSeq(h, ",") {
			flag = strings.TrimSpace(flag)
			for _, b := range billedBetas {
				if strings.HasPrefix(flag, b) {
					return choices, "anthropic-beta " + truncated(flag, 64)
				}
			}
		}
	}
	return choices, ""
}

// truncated cuts s to at most n bytes, for messages.
func truncated(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
