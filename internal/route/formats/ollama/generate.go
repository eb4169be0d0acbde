package ollama

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sort"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

// generateFields are the /api/generate fields DecodeGenerateRequest maps
// or deliberately drops; any other field is kept in Request.Extra for
// Ollama upstreams, as for /api/chat.
var generateFields = map[string]bool{"model": true, "prompt": true, "suffix": true, "system": true, "template": true, "raw": true,
	"context": true, "stream": true, "format": true, "options": true, "think": true, "images": true}

// Generate modes other than a completion: Ollama answers a generate
// request without a prompt by loading the model (or unloading it, with
// keep_alive 0) and nothing else.
const (
	GenerateLoad   = "load"
	GenerateUnload = "unload"
)

// DecodeGenerateRequest turns a client's /api/generate body into the
// canonical model: the prompt (with its images) is the one user message,
// system the system prompt; format, options and think as for /api/chat.
// mode is "" for a completion, or GenerateLoad/GenerateUnload when the
// request has no prompt and no images (nothing is to be generated).
// template and raw are accepted and ignored (the upstream applies its own
// chat template), context (token ids of an earlier answer) is checked to
// be an integer array and ignored, and a suffix (fill-in-the-middle) is a
// 400. Failures are *llm.Error 400 naming the field.
func DecodeGenerateRequest(body []byte) (req *llm.Request, mode string, err error) {
	var in GenerateRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, "", invalid("request body is not a valid Ollama generate request: %v", err)
	}
	if in.Model == "" {
		return nil, "", invalid("model: required")
	}
	if err := llm.CheckModel("model", in.Model); err != nil {
		return nil, "", err
	}
	if in.Suffix != "" {
		return nil, "", invalid("suffix: fill-in-the-middle is not supported by the gateway; send the prompt alone")
	}
	if !isNull(in.Context) {
		var ids []int64
		if json.Unmarshal(in.Context, &ids) != nil {
			return nil, "", invalid("context: must be an array of integers")
		}
	}
	r := &llm.Request{Model: in.Model, Stream: in.Stream == nil || *in.Stream}
	if err := decodeFormat(r, in.Format); err != nil {
		return nil, "", err
	}
	if err := decodeThink(r, in.Think); err != nil {
		return nil, "", err
	}
	if err := decodeOptions(r, in.Options); err != nil {
		return nil, "", err
	}
	if in.System != "" {
		r.System = []llm.Part{{Type: llm.PartText, Text: in.System}}
	}
	var parts []llm.Part
	if in.Prompt != "" || len(in.Images) == 0 {
		parts = append(parts, llm.Part{Type: llm.PartText, Text: in.Prompt})
	}
	for i, s := range in.Images {
		media, err := decodeImage(s)
		if err != nil {
			return nil, "", invalid("images[%d]: %v", i, err)
		}
		parts = append(parts, llm.Part{Type: llm.PartImage, Media: media})
	}
	r.Messages = []llm.Message{{Role: llm.RoleUser, Parts: parts}}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		for k, v := range raw {
			if !generateFields[k] {
				if r.Extra == nil {
					r.Extra = map[string]json.RawMessage{}
				}
				r.Extra[k] = v
			}
		}
	}
	if in.Prompt == "" && len(in.Images) == 0 {
		mode = GenerateLoad
		if unloads(in.KeepAlive) {
			mode = GenerateUnload
		}
	}
	return r, mode, nil
}

// unloads reports whether keep_alive is zero (0, "0", "0s", "0m"), which
// asks Ollama to unload the model.
func unloads(raw json.RawMessage) bool {
	if isNull(raw) {
		return false
	}
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return n == 0
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return false
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d == 0
	}
	return s == "0"
}

// EncodeGenerateResponseTimed renders a canonical response as one
// /api/generate answer object with done:true.
func EncodeGenerateResponseTimed(r *llm.Response, t Timing) ([]byte, error) {
	return json.Marshal(generateOf(chatResponse(r, t)))
}

// EncodeGenerateMode renders the answer to a generate request without a
// prompt: done at once, done_reason "load" or "unload", nothing generated.
func EncodeGenerateMode(model, mode string, now time.Time) []byte {
	b, _ := json.Marshal(GenerateResponse{Model: model, CreatedAt: now.UTC(), Done: true, DoneReason: mode})
	return b
}

// generateOf is the /api/generate shape of a /api/chat answer object.
func generateOf(c ChatResponse) GenerateResponse {
	return GenerateResponse{Model: c.Model, CreatedAt: c.CreatedAt, Response: c.Message.Content, Thinking: c.Message.Thinking,
		ToolCalls: c.Message.ToolCalls, Done: c.Done, DoneReason: c.DoneReason,
		TotalDuration: c.TotalDuration, LoadDuration: c.LoadDuration, PromptEvalCount: c.PromptEvalCount,
		PromptEvalDuration: c.PromptEvalDuration, EvalCount: c.EvalCount, EvalDuration: c.EvalDuration}
}

// NewGenerateStreamEncoder is NewStreamEncoder for /api/generate: lines
// carry the text in response (and thinking) instead of a message.
func NewGenerateStreamEncoder(w io.Writer, model string, now func() time.Time) *StreamEncoder {
	e := NewStreamEncoder(w, model, now)
	e.generate = true
	return e
}

// ModelCard is what the gateway knows of a model, for /api/show and
// /api/ps.
type ModelCard struct {
	Name   string // as the client named it
	Family string // the provider, or "alias", "combo"
	Kind   string // chat, embedding, alias, combo
}

// capabilities are what the gateway serves for a model of a kind: chat
// models complete and take tools (the gateway passes tools to every
// provider); embedding models embed. Vision and thinking depend on the
// upstream model, which the gateway does not know, so they are not
// claimed.
func (c ModelCard) capabilities() []string {
	if c.Kind == "embedding" {
		return []string{"embedding"}
	}
	return []string{"completion", "tools"}
}

func (c ModelCard) details() ModelDetails {
	return ModelDetails{Format: "gateway", Family: c.Family, Families: []string{c.Family}}
}

// EncodeShow renders the /api/show answer for a model: details as in
// /api/tags, capabilities by kind, and model_info naming what the gateway
// knows (general.architecture "gateway", the name, the family and the
// kind; not the targets a combo or alias routes to, which are the
// operator's). Nothing is read from the upstream.
func EncodeShow(c ModelCard, modified time.Time) []byte {
	info := map[string]any{"general.architecture": "gateway", "general.basename": c.Name, "general.family": c.Family,
		"gateway.kind": c.Kind}
	b, _ := json.Marshal(ShowResponse{Details: c.details(), ModelInfo: info, Capabilities: c.capabilities(), ModifiedAt: modified.UTC()})
	return b
}

// EncodePS renders the /api/ps answer: every listed model, sorted by
// name, "running" (the gateway loads nothing, so sizes are 0 and
// expires_at is the zero time).
func EncodePS(cards []ModelCard) []byte {
	sort.Slice(cards, func(i, j int) bool { return cards[i].Name < cards[j].Name })
	out := PSResponse{Models: make([]PSEntry, 0, len(cards))}
	for _, c := range cards {
		sum := sha256.Sum256([]byte(c.Name))
		out.Models = append(out.Models, PSEntry{Name: c.Name, Model: c.Name, Digest: hex.EncodeToString(sum[:]), Details: c.details()})
	}
	b, _ := json.Marshal(out)
	return b
}

// DecodeShowRequest validates a client's /api/show body and returns the
// model it names.
func DecodeShowRequest(body []byte) (string, error) {
	var req ShowRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return "", invalid("request body is not a valid Ollama show request: %v", err)
	}
	model := req.Model
	if model == "" {
		model = req.Name
	}
	if model == "" {
		return "", invalid("model: required")
	}
	if err := llm.CheckModel("model", model); err != nil {
		return "", err
	}
	return model, nil
}
