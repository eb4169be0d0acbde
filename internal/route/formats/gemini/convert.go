package gemini

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

func invalid(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

func str(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// usageIn converts Gemini counts to canonical ones: cached tokens leave
// the input count, thoughts join the output count. Tokens of built-in
// tool results (toolUsePromptTokenCount) count as input.
func usageIn(u *UsageMetadata) llm.Usage {
	if u == nil {
		return llm.Usage{}
	}
	return llm.Usage{
		InputTokens:     max(0, u.PromptTokenCount-u.CachedContentTokenCount) + u.ToolUsePromptTokenCount,
		CacheReadTokens: u.CachedContentTokenCount,
		OutputTokens:    u.CandidatesTokenCount + u.ThoughtsTokenCount,
		ReasoningTokens: u.ThoughtsTokenCount,
	}
}

// usageOut is the inverse of usageIn.
func usageOut(u llm.Usage) *UsageMetadata {
	return &UsageMetadata{
		PromptTokenCount:        u.PromptTokens(),
		CachedContentTokenCount: u.CacheReadTokens,
		CandidatesTokenCount:    max(0, u.OutputTokens-u.ReasoningTokens),
		ThoughtsTokenCount:      u.ReasoningTokens,
		TotalTokenCount:         u.TotalTokens(),
	}
}

// blockedFinish reports finish reasons that mean the answer was withheld
// by a filter.
func blockedFinish(f string) bool {
	switch f {
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
		"IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "LANGUAGE":
		return true
	}
	return false
}

// stopReasonIn maps a finish reason; STOP with function calls is tool use.
func stopReasonIn(f string, calls bool) llm.StopReason {
	switch {
	case f == "MAX_TOKENS":
		return llm.StopMaxTokens
	case blockedFinish(f):
		return llm.StopContentFilter
	case f == "MALFORMED_FUNCTION_CALL", f == "UNEXPECTED_TOOL_CALL", f == "TOO_MANY_TOOL_CALLS":
		return llm.StopError
	case calls:
		return llm.StopToolUse
	}
	return llm.StopEnd
}

// finishReasonOut maps a canonical stop reason; Gemini reports tool use
// and stop sequences as STOP.
func finishReasonOut(s llm.StopReason) string {
	switch s {
	case llm.StopMaxTokens:
		return "MAX_TOKENS"
	case llm.StopContentFilter, llm.StopRefusal:
		return "SAFETY"
	case llm.StopError:
		return "OTHER"
	}
	return "STOP"
}

// blockedError is the error for an answer withheld by a filter.
func blockedError(reason, msg string) *llm.Error {
	m := "the response was blocked (" + reason + ")"
	if msg != "" {
		m += ": " + msg
	}
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: reason, Message: m}
}

// argsObject makes canonical arguments a JSON object for Gemini: empty
// becomes {}, anything that is not an object is wrapped as
// {"_invalid_arguments": "<text>"} so it stays visible.
func argsObject(raw []byte) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if t[0] == '{' && json.Unmarshal(t, &obj) == nil && obj != nil {
		var b bytes.Buffer
		_ = json.Compact(&b, t)
		return b.Bytes()
	}
	b, _ := json.Marshal(map[string]string{"_invalid_arguments": string(raw)})
	return b
}

// isObject reports whether raw is a JSON object.
func isObject(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	var obj map[string]json.RawMessage
	return json.Unmarshal(t, &obj) == nil
}

// validSignature reports whether s is base64, which Gemini clients (whose
// SDKs hold signatures as bytes) can parse. Signatures of other providers
// that are not are left out of Gemini output.
func validSignature(s string) bool {
	if s == "" {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// mintID makes a tool-call id for a Gemini call that has none, stable
// for the same inputs.
func mintID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "call_" + hex.EncodeToString(h[:12])
}

// partType classifies media by MIME type.
func partType(mimeType string) llm.PartType {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return llm.PartImage
	case strings.HasPrefix(mimeType, "audio/"):
		return llm.PartAudio
	}
	return llm.PartFile
}

// mediaPart decodes inlineData or fileData.
func mediaPart(p Part, field string) (llm.Part, error) {
	if b := p.InlineData; b != nil {
		data, err := base64.StdEncoding.DecodeString(b.Data)
		if err != nil {
			if data, err = base64.URLEncoding.DecodeString(b.Data); err != nil {
				return llm.Part{}, invalid("%s.inlineData.data: invalid base64", field)
			}
		}
		if b.MIMEType == "" {
			return llm.Part{}, invalid("%s.inlineData.mimeType: required", field)
		}
		return llm.Part{Type: partType(b.MIMEType), Media: &llm.Media{MIMEType: b.MIMEType, Data: data}}, nil
	}
	f := p.FileData
	if f.FileURI == "" {
		return llm.Part{}, invalid("%s.fileData.fileUri: required", field)
	}
	return llm.Part{Type: partType(f.MIMEType), Media: &llm.Media{MIMEType: f.MIMEType, URL: f.FileURI}}, nil
}

// mediaOut encodes a media part: bytes inline, URLs as fileData.
func mediaOut(p llm.Part) Part {
	m := p.Media
	mt := m.MIMEType
	if len(m.Data) > 0 {
		if mt == "" {
			mt = http.DetectContentType(m.Data)
		}
		return Part{InlineData: &Blob{MIMEType: mt, Data: base64.StdEncoding.EncodeToString(m.Data)}}
	}
	if mt == "" {
		mt = mime.TypeByExtension(path.Ext(strings.SplitN(m.URL, "?", 2)[0]))
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = mt[:i]
		}
	}
	if mt == "" && p.Type == llm.PartImage {
		mt = "image/jpeg"
	}
	return Part{FileData: &FileData{MIMEType: mt, FileURI: m.URL}}
}

// normalizeSchema turns Gemini's OpenAPI-subset schema into JSON Schema:
// type names are lower-cased, nullable becomes a "null" type,
// propertyOrdering is dropped and integer limits sent as strings (as
// protobuf JSON writes int64) become numbers.
func normalizeSchema(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return raw
	}
	out, err := json.Marshal(normalizeValue(v))
	if err != nil {
		return raw
	}
	return out
}

var intLimits = map[string]bool{"minItems": true, "maxItems": true, "minLength": true, "maxLength": true,
	"minProperties": true, "maxProperties": true}

func normalizeValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			switch {
			case k == "propertyOrdering" || k == "nullable":
				continue
			case k == "type":
				if s, ok := val.(string); ok {
					val = strings.ToLower(s)
				}
			case k == "properties" || k == "$defs" || k == "definitions":
				if props, ok := val.(map[string]any); ok {
					np := make(map[string]any, len(props))
					for name, s := range props {
						np[name] = normalizeValue(s)
					}
					val = np
				}
			case intLimits[k]:
				if s, ok := val.(string); ok {
					val = json.Number(s)
				}
			default:
				val = normalizeValue(val)
			}
			out[k] = val
		}
		if n, _ := t["nullable"].(bool); n {
			if s, ok := out["type"].(string); ok {
				out["type"] = []any{s, "null"}
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalizeValue(e)
		}
		return out
	}
	return v
}

// snakeKey finds snake_case object keys, which the Gemini REST API accepts
// as well as camelCase (its curl examples use them).
var snakeKey = regexp.MustCompile(`"[a-z][a-z0-9]*_[a-z0-9_]*"\s*:`)

// opaque keys hold user data (arguments, schemas) whose keys are kept.
var opaque = map[string]bool{"args": true, "response": true, "parameters": true, "parametersJsonSchema": true,
	"responseSchema": true, "responseJsonSchema": true, "labels": true}

// camelize rewrites snake_case keys of a request body to camelCase,
// leaving user data alone. Bodies without such keys are returned as is.
func camelize(body []byte) []byte {
	if !snakeKey.Match(body) {
		return body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return body
	}
	out, err := json.Marshal(camelValue(v))
	if err != nil {
		return body
	}
	return out
}

func camelValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			ck := camel(k)
			if !opaque[ck] {
				val = camelValue(val)
			}
			if _, dup := out[ck]; dup && ck != k {
				continue // the camelCase spelling wins
			}
			out[ck] = val
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = camelValue(e)
		}
		return t
	}
	return v
}

func camel(k string) string {
	if !strings.Contains(k, "_") {
		return k
	}
	var b strings.Builder
	up := false
	for _, r := range k {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}
