package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// DefaultMaxTokens is sent when a request names no max_tokens and
// EncodeOptions.DefaultMaxTokens is 0.
const DefaultMaxTokens = 4096

// MinThinkingBudget is the smallest budget Anthropic accepts.
const MinThinkingBudget = 1024

// xhighBudget is the thinking budget of the xhigh effort, unless the
// request's mapping puts high above it (see the package doc).
const xhighBudget = 32768

// EncodeOptions tunes EncodeRequest.
type EncodeOptions struct {
	// DefaultMaxTokens is sent when the request has no max_tokens, which
	// Anthropic requires; 0 means DefaultMaxTokens (4096).
	DefaultMaxTokens int
	// Native says the client spoke Anthropic Messages: Request.Extra is
	// passed through and sampling parameters are sent as given even with
	// thinking on (the client gets Anthropic's own behaviour).
	Native bool
}

// WithNative marks ctx as carrying a request whose client spoke Anthropic
// Messages; Client then encodes as if Options.Native were set. The
// Anthropic inbound handler sets it, since one Client serves clients of
// every dialect.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectAnthropic)
}

type betaKey struct{}

// WithBeta records the anthropic-beta header of a client that spoke
// Anthropic Messages; Client sends those flags (merged with any configured
// in Client.Headers) so features such as interleaved thinking keep
// working through the gateway.
func WithBeta(ctx context.Context, beta string) context.Context {
	return context.WithValue(ctx, betaKey{}, beta)
}

func betaFromContext(ctx context.Context) string {
	v, _ := ctx.Value(betaKey{}).(string)
	return v
}

// IsNative reports whether ctx was marked by WithNative.
func IsNative(ctx context.Context) bool {
	return llm.DialectOf(ctx) == llm.DialectAnthropic
}

// EncodeRequest writes r as the body of POST /v1/messages for model (the
// upstream's name, which replaces r.Model). The rules are in the package
// doc. Requests Anthropic cannot express fail with *llm.Error 400.
func EncodeRequest(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	w, err := wireRequest(r, model, opts)
	if err != nil {
		return nil, err
	}
	return marshalWithExtra(w, r, opts)
}

// encodeCountTokens writes the body of /v1/messages/count_tokens: the
// fields that make up the prompt, without max_tokens and sampling.
func encodeCountTokens(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	w, err := wireRequest(r, model, opts)
	if err != nil {
		return nil, err
	}
	w.MaxTokens, w.StopSequences, w.Temperature, w.TopP, w.TopK, w.Metadata, w.Stream = nil, nil, nil, nil, nil, nil, false
	return json.Marshal(w)
}

func marshalWithExtra(w *Request, r *llm.Request, opts EncodeOptions) ([]byte, error) {
	body, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if !opts.Native || len(r.Extra) == 0 {
		return body, nil
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(body, &present); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(r.Extra))
	for k := range r.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	buf := bytes.NewBuffer(body[:len(body)-1]) // without the closing brace
	for _, k := range keys {
		v := r.Extra[k]
		if _, set := present[k]; set || !json.Valid(v) {
			continue
		}
		kb, _ := json.Marshal(k)
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(compact(v))
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func reasoningEnabled(r *llm.Reasoning) bool {
	if r == nil {
		return false
	}
	return r.Enabled || r.BudgetTokens > 0 || (r.Effort != "" && r.Effort != "none")
}

// thinkingBudget is the budget_tokens sent for enabled reasoning: the
// request's budget, else its effort's by the request's mapping
// (llm.Request.EffortBudgets), at least MinThinkingBudget.
func thinkingBudget(r *llm.Request) int {
	rs := r.Reasoning
	budget := rs.BudgetTokens
	if budget <= 0 {
		m := r.EffortBudgets
		var ok bool
		if budget, ok = m.Budget(rs.Effort); !ok {
			budget, _ = m.Budget("medium")
			if rs.Effort == "xhigh" {
				high, _ := m.Budget("high")
				budget = max(xhighBudget, high)
			}
		}
	}
	return max(budget, MinThinkingBudget)
}

func wireRequest(r *llm.Request, model string, opts EncodeOptions) (*Request, error) {
	if model == "" {
		model = r.Model
	}
	w := &Request{Model: model, Stream: r.Stream, StopSequences: r.Stop, Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK}

	for _, p := range r.System {
		if p.Type != llm.PartText {
			return nil, invalid("system: only text is supported by Anthropic, got %s", p.Type)
		}
		if p.Text == "" {
			continue
		}
		w.System = append(w.System, ContentBlock{Type: BlockText, Text: p.Text, CacheControl: cacheOut(p.CacheControl)})
	}
	if s := responseFormatInstruction(r.ResponseFormat); s != "" {
		w.System = append(w.System, ContentBlock{Type: BlockText, Text: s})
	}

	msgs, err := messagesOut(r.Messages)
	if err != nil {
		return nil, err
	}
	w.Messages = msgs

	for _, t := range r.Tools {
		schema := t.Parameters
		if isNull(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		w.Tools = append(w.Tools, Tool{Name: t.Name, Description: t.Description, InputSchema: compact(schema),
			CacheControl: cacheOut(t.CacheControl)})
	}

	noParallel := r.ParallelToolCalls != nil && !*r.ParallelToolCalls
	forced := false
	if len(w.Tools) > 0 {
		tc := &ToolChoice{Type: "auto"}
		if c := r.ToolChoice; c != nil {
			noParallel = noParallel || c.DisableParallel
			switch c.Mode {
			case llm.ToolChoiceNone:
				tc.Type = "none"
			case llm.ToolChoiceRequired:
				tc.Type, forced = "any", true
			case llm.ToolChoiceTool:
				if c.Name == "" {
					return nil, invalid("tool_choice: a specific tool needs a name")
				}
				tc.Type, tc.Name, forced = "tool", c.Name, true
			}
		}
		if tc.Type != "none" {
			tc.DisableParallelToolUse = noParallel
		}
		if r.ToolChoice != nil || tc.DisableParallelToolUse {
			w.ToolChoice = tc
		}
	}

	maxTokens := opts.DefaultMaxTokens
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	if r.MaxTokens != nil && *r.MaxTokens > 0 {
		maxTokens = *r.MaxTokens
	}
	_, rawThinking := r.Extra["thinking"]
	rawThinking = rawThinking && opts.Native
	thinking := reasoningEnabled(r.Reasoning) && !rawThinking && !(forced && !opts.Native)
	if thinking {
		budget := thinkingBudget(r)
		if budget >= maxTokens {
			maxTokens += budget
		}
		w.Thinking = &Thinking{Type: "enabled", BudgetTokens: budget}
		if !opts.Native {
			w.Temperature, w.TopP, w.TopK = nil, nil, nil
		}
	}
	if w.Temperature != nil && *w.Temperature > 1 && !opts.Native {
		one := 1.0 // OpenAI's range is 0–2, Anthropic's 0–1
		w.Temperature = &one
	}
	w.MaxTokens = &maxTokens

	if r.User != "" {
		w.Metadata = &Metadata{UserID: r.User}
	}
	return w, nil
}

// responseFormatInstruction expresses a structured-output request as a
// system instruction (Anthropic has no response_format).
func responseFormatInstruction(f *llm.ResponseFormat) string {
	if f == nil {
		return ""
	}
	switch f.Type {
	case "json_schema":
		if isNull(f.Schema) {
			return "Respond only with a single valid JSON object, without any other text or code fences."
		}
		name := ""
		if f.Name != "" {
			name = fmt.Sprintf(" (%q)", f.Name)
		}
		return fmt.Sprintf("Respond only with a single valid JSON value, without any other text or code fences, that conforms to this JSON Schema%s:\n%s",
			name, compact(f.Schema))
	case "json_object":
		return "Respond only with a single valid JSON object, without any other text or code fences."
	}
	return ""
}

// messagesOut converts canonical turns: tool messages become user
// messages, consecutive same-role messages merge, tool_result blocks come
// first in a user message, and messages left empty are dropped.
func messagesOut(in []llm.Message) ([]Message, error) {
	var out []Message
	for i, m := range in {
		var role string
		switch m.Role {
		case llm.RoleUser, llm.RoleTool:
			role = "user"
		case llm.RoleAssistant:
			role = "assistant"
		default:
			return nil, invalid("messages[%d].role: %q is not supported by Anthropic", i, m.Role)
		}
		var blocks Content
		for j, p := range m.Parts {
			if role == "assistant" && (p.Type == llm.PartToolResult) {
				return nil, invalid("messages[%d].parts[%d]: a tool result cannot be part of an assistant turn", i, j)
			}
			if role == "user" && (p.Type == llm.PartThinking || p.Type == llm.PartRedactedThinking) {
				continue
			}
			b, ok, err := partToBlock(p)
			if err != nil {
				return nil, invalid("messages[%d].parts[%d]: %s", i, j, err.Error())
			}
			if ok {
				blocks = append(blocks, b)
			}
		}
		if len(blocks) == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Role == role {
			out[n-1].Content = append(out[n-1].Content, blocks...)
			continue
		}
		out = append(out, Message{Role: role, Content: blocks})
	}
	for i := range out {
		if out[i].Role == "user" {
			c := out[i].Content
			sorted := make(Content, 0, len(c))
			for _, b := range c {
				if b.Type == BlockToolResult {
					sorted = append(sorted, b)
				}
			}
			for _, b := range c {
				if b.Type != BlockToolResult {
					sorted = append(sorted, b)
				}
			}
			out[i].Content = sorted
		}
	}
	if out == nil {
		out = []Message{}
	}
	return out, nil
}

// DecodeResponse decodes an upstream's non-streamed answer. Blocks the
// canonical model cannot hold (server tool blocks) are left out. A body
// that is not a message fails with *llm.Error 502.
func DecodeResponse(body []byte) (*llm.Response, error) {
	r, _, err := decodeResponse(body)
	return r, err
}

// decodeResponse is DecodeResponse telling an error object the upstream
// answered (answered) from a body it could not read.
func decodeResponse(body []byte) (_ *llm.Response, answered bool, _ error) {
	var w Response
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, false, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "malformed message: " + err.Error()}
	}
	if w.Type == "error" {
		return nil, true, DecodeError(http.StatusOK, nil, body)
	}
	if w.Type != "message" && w.Type != "" {
		return nil, false, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: fmt.Sprintf("type %q is not a message", w.Type)}
	}
	r := &llm.Response{ID: w.ID, Model: w.Model, Content: []llm.Part{}, StopReason: stopReasonIn(w.StopReason), Usage: usageIn(w.Usage)}
	if w.StopSequence != nil {
		r.StopSequence = *w.StopSequence
	}
	for i, b := range w.Content {
		p, skip, err := blockToPart(b, fmt.Sprintf("content[%d]", i))
		if skip {
			continue
		}
		if err != nil {
			return nil, false, &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: "malformed message: " + err.Error()}
		}
		r.Content = append(r.Content, p)
	}
	return r, false, nil
}

// DecodeError turns an upstream error answer into an *llm.Error: the
// error type from the body when there is one (else from the status), the
// message (a body without an error object is summarised by its status,
// upstreamhttp.StatusText), and RetryAfter from
// retry-after or, for rate limits, the anthropic-ratelimit-*-reset
// headers. Provider is left for the caller.
func DecodeError(status int, header http.Header, body []byte) *llm.Error {
	e := &llm.Error{Status: status}
	var w ErrorResponse
	if json.Unmarshal(body, &w) == nil && w.Error.Type != "" {
		typ, st, code := errorTypeIn(w.Error.Type)
		e.Type, e.Code, e.Message = typ, code, w.Error.Message
		if e.Status < 400 { // an error body under 200: use the type's status
			e.Status = st
		}
	} else {
		e.Type = llm.TypeForStatus(status)
		e.Message = upstreamhttp.StatusText(status)
	}
	if e.Type == "" {
		e.Type = llm.TypeForStatus(e.Status)
	}
	e.RetryAfter = retryAfter(header, e.Status == http.StatusTooManyRequests || e.Type == llm.ErrRateLimit, time.Now())
	return e
}

// rateLimitKinds are the limits Anthropic reports in
// anthropic-ratelimit-<kind>-remaining and -reset headers.
var rateLimitKinds = []string{"requests", "tokens", "input-tokens", "output-tokens"}

// retryAfter reads retry-after (seconds or an HTTP date); failing that,
// for rate limits, the latest reset among exhausted limits, or else the
// earliest future reset.
func retryAfter(h http.Header, rateLimited bool, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < 1e7 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if !rateLimited {
		return 0
	}
	var exhausted, earliest time.Duration
	for _, k := range rateLimitKinds {
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(h.Get("anthropic-ratelimit-"+k+"-reset")))
		if err != nil {
			continue
		}
		d := t.Sub(now)
		if d <= 0 {
			continue
		}
		if strings.TrimSpace(h.Get("anthropic-ratelimit-"+k+"-remaining")) == "0" {
			exhausted = max(exhausted, d)
		}
		if earliest == 0 || d < earliest {
			earliest = d
		}
	}
	if exhausted > 0 {
		return exhausted
	}
	return earliest
}
