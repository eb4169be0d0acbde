package anthropic

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// invalidArgumentsKey wraps tool-call argument text that is not a JSON
// object (see the package doc).
const invalidArgumentsKey = "_invalid_arguments"

// inputObject turns canonical argument text into an Anthropic input
// object: empty → {}, a JSON object → itself (compacted), anything else →
// {"_invalid_arguments": text}.
func inputObject(args json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(args)
	if len(t) == 0 {
		return json.RawMessage("{}")
	}
	if t[0] == '{' && json.Valid(t) {
		var buf bytes.Buffer
		if json.Compact(&buf, t) == nil {
			return buf.Bytes()
		}
	}
	b, _ := json.Marshal(map[string]string{invalidArgumentsKey: string(args)})
	return b
}

// argumentsText turns an Anthropic input into canonical argument text.
// ok is false when input is present but not a JSON object.
func argumentsText(input json.RawMessage) (json.RawMessage, bool) {
	t := bytes.TrimSpace(input)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return json.RawMessage("{}"), true
	}
	if t[0] != '{' || !json.Valid(t) {
		return nil, false
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

func cacheIn(c *CacheControl) *llm.CacheControl {
	if c == nil {
		return nil
	}
	return &llm.CacheControl{Type: c.Type, TTL: c.TTL}
}

func cacheOut(c *llm.CacheControl) *CacheControl {
	if c == nil {
		return nil
	}
	t := c.Type
	if t == "" {
		t = "ephemeral"
	}
	return &CacheControl{Type: t, TTL: c.TTL}
}

// mediaIn converts an image or document source.
func mediaIn(s *Source, path string) (*llm.Media, error) {
	if s == nil {
		return nil, fmt.Errorf("%s.source: field required", path)
	}
	switch s.Type {
	case "base64":
		data, err := base64.StdEncoding.DecodeString(s.Data)
		if err != nil {
			return nil, fmt.Errorf("%s.source.data: invalid base64", path)
		}
		if len(data) == 0 {
			return nil, fmt.Errorf("%s.source.data: field required", path)
		}
		return &llm.Media{MIMEType: s.MediaType, Data: data}, nil
	case "url":
		if s.URL == "" {
			return nil, fmt.Errorf("%s.source.url: field required", path)
		}
		return &llm.Media{MIMEType: s.MediaType, URL: s.URL}, nil
	case "text":
		mt := s.MediaType
		if mt == "" {
			mt = "text/plain"
		}
		return &llm.Media{MIMEType: mt, Data: []byte(s.Data)}, nil
	case "":
		return nil, fmt.Errorf("%s.source.type: field required", path)
	}
	return nil, fmt.Errorf("%s.source.type: %q is not supported by this gateway", path, s.Type)
}

// sourceOut converts canonical media to a source. Data URLs become base64
// sources, since OpenAI clients send inline images that way.
func sourceOut(m *llm.Media, document bool) (*Source, error) {
	if m == nil {
		return nil, fmt.Errorf("media part without media")
	}
	if len(m.Data) > 0 {
		mt := m.MIMEType
		if mt == "" {
			mt = http.DetectContentType(m.Data)
			if i := strings.IndexByte(mt, ';'); i >= 0 {
				mt = mt[:i]
			}
		}
		if document && strings.HasPrefix(mt, "text/") {
			return &Source{Type: "text", MediaType: "text/plain", Data: string(m.Data)}, nil
		}
		return &Source{Type: "base64", MediaType: mt, Data: base64.StdEncoding.EncodeToString(m.Data)}, nil
	}
	if m.URL == "" {
		return nil, fmt.Errorf("media part without data or url")
	}
	if rest, ok := strings.CutPrefix(m.URL, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mt, isBase64 := strings.CutSuffix(meta, ";base64")
		if !ok || !isBase64 {
			return nil, fmt.Errorf("data URL is not base64")
		}
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = mt[:i]
		}
		if mt == "" {
			mt = m.MIMEType
		}
		return &Source{Type: "base64", MediaType: mt, Data: data}, nil
	}
	return &Source{Type: "url", URL: m.URL}, nil
}

// blockToPart converts a non-tool_result block. skip reports a block type
// the canonical model cannot hold.
func blockToPart(b ContentBlock, path string) (p llm.Part, skip bool, err error) {
	switch b.Type {
	case BlockText:
		return llm.Part{Type: llm.PartText, Text: b.Text, CacheControl: cacheIn(b.CacheControl)}, false, nil
	case BlockImage:
		m, err := mediaIn(b.Source, path)
		if err != nil {
			return p, false, err
		}
		return llm.Part{Type: llm.PartImage, Media: m, CacheControl: cacheIn(b.CacheControl)}, false, nil
	case BlockDocument:
		m, err := mediaIn(b.Source, path)
		if err != nil {
			return p, false, err
		}
		m.Name = b.Title
		if m.MIMEType == "" && m.URL != "" {
			m.MIMEType = "application/pdf" // URL documents are PDFs
		}
		return llm.Part{Type: llm.PartFile, Media: m, CacheControl: cacheIn(b.CacheControl)}, false, nil
	case BlockToolUse:
		if b.ID == "" {
			return p, false, fmt.Errorf("%s.id: field required", path)
		}
		if b.Name == "" {
			return p, false, fmt.Errorf("%s.name: field required", path)
		}
		args, ok := argumentsText(b.Input)
		if !ok {
			return p, false, fmt.Errorf("%s.input: must be a JSON object", path)
		}
		return llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: b.ID, Name: b.Name, Arguments: args},
			CacheControl: cacheIn(b.CacheControl)}, false, nil
	case BlockThinking:
		return llm.Part{Type: llm.PartThinking, Text: b.Thinking, Signature: b.Signature}, false, nil
	case BlockRedactedThinking:
		return llm.Part{Type: llm.PartRedactedThinking, Data: b.Data}, false, nil
	case "":
		return p, false, fmt.Errorf("%s.type: field required", path)
	}
	return p, true, fmt.Errorf("%s.type: block type %q is not supported by this gateway", path, b.Type)
}

// partToBlock converts a canonical part; ok is false for parts that are
// not sent (empty text, unsigned thinking, empty redacted thinking).
func partToBlock(p llm.Part) (b ContentBlock, ok bool, err error) {
	switch p.Type {
	case llm.PartText:
		if p.Text == "" {
			return b, false, nil
		}
		return ContentBlock{Type: BlockText, Text: p.Text, CacheControl: cacheOut(p.CacheControl)}, true, nil
	case llm.PartImage, llm.PartFile:
		typ := BlockImage
		if p.Type == llm.PartFile {
			typ = BlockDocument
		}
		src, err := sourceOut(p.Media, p.Type == llm.PartFile)
		if err != nil {
			return b, false, err
		}
		b = ContentBlock{Type: typ, Source: src, CacheControl: cacheOut(p.CacheControl)}
		if p.Type == llm.PartFile && p.Media != nil {
			b.Title = p.Media.Name
		}
		return b, true, nil
	case llm.PartToolCall:
		if p.ToolCall == nil {
			return b, false, fmt.Errorf("tool_call part without a tool call")
		}
		return ContentBlock{Type: BlockToolUse, ID: toolID(p.ToolCall.ID), Name: p.ToolCall.Name,
			Input: inputObject(p.ToolCall.Arguments), CacheControl: cacheOut(p.CacheControl)}, true, nil
	case llm.PartToolResult:
		tr := p.ToolResult
		if tr == nil {
			return b, false, fmt.Errorf("tool_result part without a tool result")
		}
		var content Content
		for _, c := range tr.Content {
			cb, ok, err := partToBlock(c)
			if err != nil {
				return b, false, err
			}
			if ok {
				content = append(content, cb)
			}
		}
		return ContentBlock{Type: BlockToolResult, ToolUseID: toolID(tr.CallID), Content: content, IsError: tr.IsError,
			CacheControl: cacheOut(p.CacheControl)}, true, nil
	case llm.PartThinking:
		if p.Signature == "" {
			return b, false, nil
		}
		return ContentBlock{Type: BlockThinking, Thinking: p.Text, Signature: p.Signature}, true, nil
	case llm.PartRedactedThinking:
		if p.Data == "" {
			return b, false, nil
		}
		return ContentBlock{Type: BlockRedactedThinking, Data: p.Data}, true, nil
	case llm.PartAudio:
		return b, false, fmt.Errorf("audio input is not supported by Anthropic")
	}
	return b, false, fmt.Errorf("part type %q is not supported by Anthropic", p.Type)
}

// toolID makes a tool-call id from another provider acceptable to
// Anthropic, which requires ^[a-zA-Z0-9_-]+$ (some upstreams mint ids such
// as "functions.get_weather:0"): other bytes become '_'. The mapping is
// the same for a call and its result, so pairing is kept.
func toolID(id string) string {
	ok := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	for i := 0; i < len(id); i++ {
		if !ok(id[i]) {
			b := []byte(id)
			for j := i; j < len(b); j++ {
				if !ok(b[j]) {
					b[j] = '_'
				}
			}
			return string(b)
		}
	}
	return id
}

// stopReasonIn maps an Anthropic stop_reason to the canonical one.
func stopReasonIn(s *string) llm.StopReason {
	if s == nil {
		return ""
	}
	switch *s {
	case "model_context_window_exceeded":
		return llm.StopMaxTokens
	}
	return llm.StopReason(*s)
}

// stopReasonOut maps a canonical stop reason for an Anthropic client;
// tools says whether the answer holds tool calls.
func stopReasonOut(r llm.StopReason, tools bool) string {
	switch r {
	case "", llm.StopEnd, llm.StopError:
		if tools {
			return string(llm.StopToolUse)
		}
		return string(llm.StopEnd)
	case llm.StopContentFilter:
		return string(llm.StopRefusal)
	}
	return string(r)
}

func usageIn(u Usage) llm.Usage {
	return llm.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadTokens: u.CacheReadInputTokens, CacheWriteTokens: u.CacheCreationInputTokens}
}

func usageOut(u llm.Usage) Usage {
	return Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheReadInputTokens: u.CacheReadTokens, CacheCreationInputTokens: u.CacheWriteTokens}
}

// errorTypeIn maps an Anthropic error type to a canonical type and the
// status Anthropic sends it with. Types the canonical model lacks keep
// their name in code.
func errorTypeIn(t string) (typ llm.ErrorType, status int, code string) {
	switch t {
	case "invalid_request_error":
		return llm.ErrInvalidRequest, http.StatusBadRequest, ""
	case "authentication_error":
		return llm.ErrAuthentication, http.StatusUnauthorized, ""
	case "billing_error":
		return llm.ErrPermission, http.StatusPaymentRequired, t
	case "permission_error":
		return llm.ErrPermission, http.StatusForbidden, ""
	case "not_found_error":
		return llm.ErrNotFound, http.StatusNotFound, ""
	case "request_too_large":
		return llm.ErrRequestTooLarge, http.StatusRequestEntityTooLarge, ""
	case "rate_limit_error":
		return llm.ErrRateLimit, http.StatusTooManyRequests, ""
	case "timeout_error":
		return llm.ErrTimeout, http.StatusGatewayTimeout, ""
	case "overloaded_error":
		return llm.ErrOverloaded, 529, ""
	case "api_error":
		return llm.ErrServer, http.StatusInternalServerError, ""
	case "":
		return "", 0, ""
	}
	return llm.ErrServer, http.StatusInternalServerError, t
}

// invalid builds the 400 every inbound decoding failure is.
func invalid(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}
