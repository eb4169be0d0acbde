package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// DecodeRequest decodes a client's POST /v1/messages body. Failures are
// *llm.Error 400 invalid_request_error naming the field; as Anthropic
// does, max_tokens is required.
func DecodeRequest(body []byte) (*llm.Request, error) {
	return decodeRequest(body, true)
}

// DecodeCountTokens decodes a client's POST /v1/messages/count_tokens
// body: a messages request without max_tokens.
func DecodeCountTokens(body []byte) (*llm.Request, error) {
	return decodeRequest(body, false)
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// field decodes raw into v, reporting failures against the field name.
func field(name string, raw json.RawMessage, v any) error {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		where := name
		if te.Field != "" {
			where = name + "." + te.Field
		}
		return invalid("%s: expected %s, got %s", where, te.Type, te.Value)
	}
	return invalid("%s: %s", name, strings.TrimPrefix(err.Error(), "json: "))
}

func decodeRequest(body []byte, needMaxTokens bool) (*llm.Request, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalid("request body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if raw == nil {
		return nil, invalid("request body: expected a JSON object")
	}
	req := &llm.Request{}
	present := func(k string) bool { return !isNull(raw[k]) }

	if !present("model") {
		return nil, invalid("model: Field required")
	}
	if err := field("model", raw["model"], &req.Model); err != nil {
		return nil, err
	}
	if req.Model == "" {
		return nil, invalid("model: must not be empty")
	}
	if err := llm.CheckModel("model", req.Model); err != nil {
		return nil, err
	}

	if present("max_tokens") {
		var n int
		if err := field("max_tokens", raw["max_tokens"], &n); err != nil {
			return nil, err
		}
		if n < 1 {
			return nil, invalid("max_tokens: must be at least 1")
		}
		req.MaxTokens = &n
	} else if needMaxTokens {
		return nil, invalid("max_tokens: Field required")
	}

	if present("system") {
		var sys System
		if err := field("system", raw["system"], &sys); err != nil {
			return nil, err
		}
		for i, b := range sys {
			if b.Type != BlockText {
				return nil, invalid("system[%d].type: system blocks must be text, got %q", i, b.Type)
			}
			if b.Text == "" && len(sys) == 1 {
				continue // "system": "" means no system prompt
			}
			req.System = append(req.System, llm.Part{Type: llm.PartText, Text: b.Text, CacheControl: cacheIn(b.CacheControl)})
		}
	}

	if !present("messages") {
		return nil, invalid("messages: Field required")
	}
	var msgs []Message
	if err := field("messages", raw["messages"], &msgs); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, invalid("messages: at least one message is required")
	}
	var err error
	if req.Messages, err = messagesIn(msgs); err != nil {
		return nil, err
	}

	if present("tools") {
		var tools []Tool
		if err := field("tools", raw["tools"], &tools); err != nil {
			return nil, err
		}
		for i, t := range tools {
			if t.Type != "" && t.Type != "custom" {
				return nil, invalid("tools[%d].type: server tool %q is not supported by this gateway", i, t.Type)
			}
			if t.Name == "" {
				return nil, invalid("tools[%d].name: Field required", i)
			}
			var params json.RawMessage
			if !isNull(t.InputSchema) {
				if schema := bytes.TrimSpace(t.InputSchema); len(schema) == 0 || schema[0] != '{' {
					return nil, invalid("tools[%d].input_schema: must be an object", i)
				}
				params = compact(t.InputSchema)
			}
			req.Tools = append(req.Tools, llm.Tool{Name: t.Name, Description: t.Description, Parameters: params,
				CacheControl: cacheIn(t.CacheControl)})
		}
	}

	if present("tool_choice") {
		var tc ToolChoice
		if err := field("tool_choice", raw["tool_choice"], &tc); err != nil {
			return nil, err
		}
		c := &llm.ToolChoice{Name: tc.Name, DisableParallel: tc.DisableParallelToolUse}
		switch tc.Type {
		case "auto":
			c.Mode = llm.ToolChoiceAuto
		case "any":
			c.Mode = llm.ToolChoiceRequired
		case "none":
			c.Mode = llm.ToolChoiceNone
		case "tool":
			c.Mode = llm.ToolChoiceTool
			if tc.Name == "" {
				return nil, invalid("tool_choice.name: Field required")
			}
		case "":
			return nil, invalid("tool_choice.type: Field required")
		default:
			return nil, invalid("tool_choice.type: must be auto, any, tool or none, got %q", tc.Type)
		}
		req.ToolChoice = c
		if tc.DisableParallelToolUse {
			f := false
			req.ParallelToolCalls = &f
		}
	}

	if present("thinking") {
		var th Thinking
		if err := field("thinking", raw["thinking"], &th); err != nil {
			return nil, err
		}
		switch th.Type {
		case "enabled":
			if th.BudgetTokens < 1 {
				return nil, invalid("thinking.budget_tokens: Field required")
			}
			req.Reasoning = &llm.Reasoning{Enabled: true, BudgetTokens: th.BudgetTokens}
		case "disabled":
			req.Reasoning = &llm.Reasoning{Enabled: false}
		case "":
			return nil, invalid("thinking.type: Field required")
		default:
			// e.g. "adaptive": the model decides; keep it for an
			// Anthropic upstream (see the package doc).
			req.Reasoning = &llm.Reasoning{Enabled: true}
			req.Extra = map[string]json.RawMessage{"thinking": compact(raw["thinking"])}
		}
	}

	if present("stop_sequences") {
		if err := field("stop_sequences", raw["stop_sequences"], &req.Stop); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		dst  **float64
	}{{"temperature", &req.Temperature}, {"top_p", &req.TopP}} {
		if present(f.name) {
			var v float64
			if err := field(f.name, raw[f.name], &v); err != nil {
				return nil, err
			}
			*f.dst = &v
		}
	}
	if present("top_k") {
		var k int
		if err := field("top_k", raw["top_k"], &k); err != nil {
			return nil, err
		}
		req.TopK = &k
	}
	if present("metadata") {
		var md map[string]any
		if err := field("metadata", raw["metadata"], &md); err != nil {
			return nil, err
		}
		for k, v := range md {
			s, ok := v.(string)
			if !ok {
				if v == nil {
					continue
				}
				return nil, invalid("metadata.%s: must be a string", k)
			}
			if k == "user_id" {
				req.User = s
				continue
			}
			if req.Metadata == nil {
				req.Metadata = map[string]string{}
			}
			req.Metadata[k] = s
		}
	}
	if present("stream") {
		if err := field("stream", raw["stream"], &req.Stream); err != nil {
			return nil, err
		}
	}

	for k, v := range raw {
		if knownRequestFields[k] {
			continue
		}
		if req.Extra == nil {
			req.Extra = map[string]json.RawMessage{}
		}
		req.Extra[k] = compact(v)
	}
	return req, nil
}

func compact(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// messagesIn converts the client's turns. A user turn with tool_result
// blocks is split: each result becomes a RoleTool message, the other
// blocks stay user messages, all in their original order.
func messagesIn(msgs []Message) ([]llm.Message, error) {
	var out []llm.Message
	toolNames := map[string]string{} // tool_use id → name
	for i, m := range msgs {
		path := fmt.Sprintf("messages[%d]", i)
		if m.Content == nil {
			return nil, invalid("%s.content: Field required", path)
		}
		switch m.Role {
		case "assistant":
			msg := llm.Message{Role: llm.RoleAssistant, Parts: []llm.Part{}}
			for j, b := range m.Content {
				bp := fmt.Sprintf("%s.content[%d]", path, j)
				if b.Type == BlockToolResult {
					return nil, invalid("%s.type: tool_result blocks belong in user messages", bp)
				}
				p, _, err := blockToPart(b, bp)
				if err != nil {
					return nil, invalid("%s", err.Error())
				}
				if p.ToolCall != nil {
					toolNames[p.ToolCall.ID] = p.ToolCall.Name
				}
				msg.Parts = append(msg.Parts, p)
			}
			out = append(out, msg)
		case "user":
			var pending []llm.Part
			flush := func(force bool) {
				if len(pending) > 0 || force {
					if pending == nil {
						pending = []llm.Part{}
					}
					out = append(out, llm.Message{Role: llm.RoleUser, Parts: pending})
					pending = nil
				}
			}
			results := 0
			for j, b := range m.Content {
				bp := fmt.Sprintf("%s.content[%d]", path, j)
				if b.Type != BlockToolResult {
					p, _, err := blockToPart(b, bp)
					if err != nil {
						return nil, invalid("%s", err.Error())
					}
					pending = append(pending, p)
					continue
				}
				if b.ToolUseID == "" {
					return nil, invalid("%s.tool_use_id: Field required", bp)
				}
				tr := &llm.ToolResult{CallID: b.ToolUseID, Name: toolNames[b.ToolUseID], IsError: b.IsError, Content: []llm.Part{}}
				for k, c := range b.Content {
					cp := fmt.Sprintf("%s.content[%d]", bp, k)
					switch c.Type {
					case BlockText, BlockImage, BlockDocument:
					default:
						return nil, invalid("%s.type: tool_result content must be text, image or document blocks, got %q", cp, c.Type)
					}
					p, _, err := blockToPart(c, cp)
					if err != nil {
						return nil, invalid("%s", err.Error())
					}
					tr.Content = append(tr.Content, p)
				}
				flush(false)
				out = append(out, llm.Message{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult, ToolResult: tr,
					CacheControl: cacheIn(b.CacheControl)}}})
				results++
			}
			flush(results == 0) // an empty user turn stays a (empty) user turn
		case "":
			return nil, invalid("%s.role: Field required", path)
		default:
			return nil, invalid("%s.role: must be user or assistant, got %q (system prompts go in the top-level system field)", path, m.Role)
		}
	}
	return out, nil
}
