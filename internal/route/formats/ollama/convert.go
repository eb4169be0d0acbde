package ollama

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

func invalid(format string, args ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// argumentsText turns Ollama tool-call arguments (an object) into canonical
// argument text. ok is false when they are neither an object, null, nor a
// string holding an object (some clients send OpenAI-style strings).
func argumentsText(raw json.RawMessage) (text []byte, ok bool) {
	if isNull(raw) {
		return []byte("{}"), true
	}
	t := bytes.TrimSpace(raw)
	if t[0] == '{' {
		var b bytes.Buffer
		if json.Compact(&b, t) == nil {
			return b.Bytes(), true
		}
		return t, false
	}
	var s string
	if json.Unmarshal(t, &s) == nil {
		if strings.TrimSpace(s) == "" {
			return []byte("{}"), true
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &obj) == nil && obj != nil {
			var b bytes.Buffer
			if json.Compact(&b, []byte(s)) == nil {
				return b.Bytes(), true
			}
		}
	}
	return t, false
}

// argumentsObject turns canonical argument text into the object Ollama
// expects: empty text is {}, text that is not a JSON object is wrapped as
// {"_invalid_arguments": text} so it stays visible.
func argumentsObject(args []byte) json.RawMessage {
	t := bytes.TrimSpace(args)
	if len(t) == 0 {
		return json.RawMessage("{}")
	}
	var obj map[string]json.RawMessage
	if t[0] == '{' && json.Unmarshal(t, &obj) == nil {
		var b bytes.Buffer
		if json.Compact(&b, t) == nil {
			return b.Bytes()
		}
	}
	b, _ := json.Marshal(map[string]string{"_invalid_arguments": string(args)})
	return b
}

// decodeImage reads one base64 image, tolerating a data: URL prefix, and
// sniffs its type.
func decodeImage(s string) (*llm.Media, error) {
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		_, data, found := strings.Cut(rest, ",")
		if !found {
			return nil, fmt.Errorf("data URL without data")
		}
		s = data
	}
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return nil, fmt.Errorf("invalid base64")
		}
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("empty image")
	}
	return &llm.Media{MIMEType: http.DetectContentType(b), Data: b}, nil
}

// doneReason maps a canonical stop reason to Ollama's done_reason.
func doneReason(s llm.StopReason) string {
	if s == llm.StopMaxTokens {
		return "length"
	}
	return "stop"
}

// stopReason maps Ollama's done_reason; tool calls make it StopToolUse.
func stopReason(reason string, toolCalls bool) llm.StopReason {
	if reason == "length" {
		return llm.StopMaxTokens
	}
	if toolCalls {
		return llm.StopToolUse
	}
	return llm.StopEnd
}

// responseID names an answer that carries no id, from its creation time.
func responseID(created time.Time) string {
	if created.IsZero() {
		return "ollama"
	}
	return "ollama-" + strconv.FormatInt(created.UnixNano(), 10)
}

// idMinter gives tool calls without ids "call_<n>", n counting every tool
// call of the conversation, skipping ids already in use.
type idMinter struct {
	n    int
	used map[string]bool
}

func (m *idMinter) next(given string) string {
	m.n++
	if given != "" {
		return given
	}
	for k := m.n - 1; ; k++ {
		id := "call_" + strconv.Itoa(k)
		if !m.used[id] {
			if m.used == nil {
				m.used = map[string]bool{}
			}
			m.used[id] = true
			return id
		}
	}
}

// joinText concatenates the text of parts of type typ with sep between.
func joinText(parts []llm.Part, typ llm.PartType, sep string) string {
	var b strings.Builder
	first := true
	for _, p := range parts {
		if p.Type != typ || p.Text == "" {
			continue
		}
		if !first {
			b.WriteString(sep)
		}
		first = false
		b.WriteString(p.Text)
	}
	return b.String()
}
