package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// EncodeOptions tune requests for one upstream.
type EncodeOptions struct {
	// Native marks a request from a Gemini-dialect client: its unknown
	// fields (Request.Extra) are passed through, thinking parts are sent
	// back with their signatures, and a thinking level stays a level.
	Native bool
}

// skipSignature is the value Google documents for function calls that
// did not come from a Gemini model (history from other models), so that
// thought-signature validation does not reject them.
const skipSignature = "skip_thought_signature_validator"

// xhighBudget is the thinking budget of the xhigh effort, unless the
// request's mapping puts high above it.
const xhighBudget = 24576

// effortBudget maps r's reasoning effort to a thinking budget by r's
// mapping (llm.Request.EffortBudgets); an effort it does not name is
// medium.
func effortBudget(r *llm.Request) int {
	m := r.EffortBudgets
	if b, ok := m.Budget(r.Reasoning.Effort); ok {
		return b
	}
	if r.Reasoning.Effort == "xhigh" {
		high, _ := m.Budget("high")
		return max(xhighBudget, high)
	}
	b, _ := m.Budget("medium")
	return b
}

// EncodeRequest renders a canonical request for a Gemini upstream; the
// model goes in the URL.
func EncodeRequest(r *llm.Request, opts EncodeOptions) ([]byte, error) {
	out, err := wireRequest(r, opts)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil || !opts.Native || len(r.Extra) == 0 {
		return b, err
	}
	return mergeExtra(b, r.Extra)
}

// wireRequest is the GenerateContentRequest for r, without the unknown
// fields of Request.Extra.
func wireRequest(r *llm.Request, opts EncodeOptions) (*GenerateContentRequest, error) {
	var out GenerateContentRequest
	for _, p := range r.System {
		if p.Type == llm.PartText && p.Text != "" {
			if out.SystemInstruction == nil {
				out.SystemInstruction = &Content{}
			}
			out.SystemInstruction.Parts = append(out.SystemInstruction.Parts, Part{Text: str(p.Text)})
		}
	}
	if len(r.Tools) > 0 {
		t := Tool{}
		for _, tool := range r.Tools {
			t.FunctionDeclarations = append(t.FunctionDeclarations, FunctionDeclaration{Name: tool.Name,
				Description: tool.Description, ParametersJSONSchema: tool.Parameters})
		}
		out.Tools = []Tool{t}
	}
	if tc := r.ToolChoice; tc != nil {
		fc := &FunctionCallingConfig{}
		switch tc.Mode {
		case llm.ToolChoiceNone:
			fc.Mode = "NONE"
		case llm.ToolChoiceRequired:
			fc.Mode = "ANY"
		case llm.ToolChoiceTool:
			fc.Mode, fc.AllowedFunctionNames = "ANY", []string{tc.Name}
		default:
			fc.Mode = "AUTO"
		}
		out.ToolConfig = &ToolConfig{FunctionCallingConfig: fc}
	}
	if gc := generationOut(r, opts); !gc.empty() {
		out.GenerationConfig = &gc
	}
	contents, err := contentsOut(r, opts)
	if err != nil {
		return nil, err
	}
	out.Contents = contents
	return &out, nil
}

func (gc *GenerationConfig) empty() bool {
	b, _ := json.Marshal(gc)
	return string(b) == "{}"
}

func generationOut(r *llm.Request, opts EncodeOptions) GenerationConfig {
	gc := GenerationConfig{Temperature: r.Temperature, TopP: r.TopP, MaxOutputTokens: r.MaxTokens, StopSequences: r.Stop,
		Seed: r.Seed, PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty}
	if r.TopK != nil {
		k := float64(*r.TopK)
		gc.TopK = &k
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			gc.ResponseMIMEType = "application/json"
		case "json_schema":
			gc.ResponseMIMEType = "application/json"
			gc.ResponseJSONSchema = rf.Schema
		}
	}
	if rs := r.Reasoning; rs != nil {
		tc := &ThinkingConfig{}
		switch {
		case !rs.Enabled:
			zero := 0
			tc.ThinkingBudget = &zero
		case rs.BudgetTokens > 0:
			b := rs.BudgetTokens
			tc.ThinkingBudget = &b
		case rs.Effort != "" && opts.Native:
			tc.ThinkingLevel = strings.ToUpper(rs.Effort)
		case rs.Effort != "":
			b := effortBudget(r)
			tc.ThinkingBudget = &b
		}
		// Clients of other dialects that ask for reasoning expect to see it.
		tc.IncludeThoughts = rs.Enabled && (rs.Summary != "" && rs.Summary != "none" || !opts.Native)
		gc.ThinkingConfig = tc
	}
	return gc
}

// resultObject renders tool-result text as a functionResponse.response
// object: a JSON object is sent as is, other text as {"result": text}
// ({"error": text} for a failure).
func resultObject(res *llm.ToolResult) json.RawMessage {
	var texts []string
	for _, c := range res.Content {
		if c.Type == llm.PartText {
			texts = append(texts, c.Text)
		}
	}
	text := strings.Join(texts, "\n")
	if isObject([]byte(text)) {
		var b bytes.Buffer
		_ = json.Compact(&b, []byte(text))
		return b.Bytes()
	}
	key := "result"
	if res.IsError {
		key = "error"
	}
	b, _ := json.Marshal(map[string]string{key: text})
	return b
}

// contentsOut renders the turns: tool results become functionResponse
// parts of a user turn, consecutive turns of one role are merged (all
// results of a parallel call share one turn), and empty turns are left
// out.
func contentsOut(r *llm.Request, opts EncodeOptions) ([]Content, error) {
	var out []Content
	names := map[string]string{} // call id -> function name
	add := func(role string, parts []Part) {
		if len(parts) == 0 {
			return
		}
		if n := len(out); n > 0 && out[n-1].Role == role {
			out[n-1].Parts = append(out[n-1].Parts, parts...)
			return
		}
		out = append(out, Content{Role: role, Parts: parts})
	}
	for i, m := range r.Messages {
		var parts []Part
		switch m.Role {
		case llm.RoleAssistant:
			firstCall := true
			for _, p := range m.Parts {
				switch p.Type {
				case llm.PartText:
					if p.Text == "" && (!opts.Native || p.Signature == "") {
						continue
					}
					gp := Part{Text: str(p.Text)}
					if opts.Native {
						gp.ThoughtSignature = p.Signature
					}
					parts = append(parts, gp)
				case llm.PartThinking:
					// Reasoning of another provider cannot be verified by
					// Gemini; only a Gemini client's own is sent back.
					if opts.Native {
						parts = append(parts, Part{Text: str(p.Text), Thought: true, ThoughtSignature: p.Signature})
					}
				case llm.PartToolCall:
					if p.ToolCall == nil {
						continue
					}
					names[p.ToolCall.ID] = p.ToolCall.Name
					gp := Part{FunctionCall: &FunctionCall{ID: p.ToolCall.ID, Name: p.ToolCall.Name, Args: argsObject(p.ToolCall.Arguments)},
						ThoughtSignature: p.Signature}
					if gp.ThoughtSignature == "" && firstCall {
						gp.ThoughtSignature = skipSignature
					}
					firstCall = false
					parts = append(parts, gp)
				case llm.PartImage, llm.PartAudio, llm.PartFile:
					if p.Media != nil {
						parts = append(parts, mediaOut(p))
					}
				}
			}
			add("model", parts)
		case llm.RoleTool:
			for _, p := range m.Parts {
				res := p.ToolResult
				if res == nil {
					continue
				}
				name := res.Name
				if name == "" {
					name = names[res.CallID]
				}
				if name == "" {
					return nil, invalid("messages[%d]: the tool result for call %q names no function, which Gemini requires", i, res.CallID)
				}
				parts = append(parts, Part{FunctionResponse: &FunctionResponse{ID: res.CallID, Name: name, Response: resultObject(res)}})
				for _, c := range res.Content {
					if c.Media != nil {
						parts = append(parts, mediaOut(c))
					}
				}
			}
			add("user", parts)
		case llm.RoleUser:
			for _, p := range m.Parts {
				switch p.Type {
				case llm.PartText:
					if p.Text != "" {
						parts = append(parts, Part{Text: str(p.Text)})
					}
				case llm.PartImage, llm.PartAudio, llm.PartFile:
					if p.Media == nil {
						return nil, invalid("messages[%d]: a %s part without media", i, p.Type)
					}
					parts = append(parts, mediaOut(p))
				case llm.PartThinking, llm.PartRedactedThinking:
				default:
					return nil, invalid("messages[%d]: content of type %s cannot be sent to a Gemini provider", i, p.Type)
				}
			}
			add("user", parts)
		default:
			return nil, invalid("messages[%d].role: %q is not user, assistant or tool", i, m.Role)
		}
	}
	if out == nil {
		out = []Content{}
	}
	return out, nil
}

// mergeExtra adds a Gemini client's unknown fields: top-level keys the
// encoder did not set, generationConfig keys likewise, and other tools
// (search, code execution) after the function declarations.
func mergeExtra(b []byte, extra map[string]json.RawMessage) ([]byte, error) {
	var merged map[string]json.RawMessage
	if err := json.Unmarshal(b, &merged); err != nil {
		return nil, err
	}
	for k, v := range extra {
		switch k {
		case "generationConfig":
			var gc, add map[string]json.RawMessage
			_ = json.Unmarshal(merged[k], &gc)
			if json.Unmarshal(v, &add) != nil {
				continue
			}
			if gc == nil {
				gc = map[string]json.RawMessage{}
			}
			for gk, gv := range add {
				if _, set := gc[gk]; !set {
					gc[gk] = gv
				}
			}
			merged[k], _ = json.Marshal(gc)
		case "tools":
			var tools, add []json.RawMessage
			_ = json.Unmarshal(merged[k], &tools)
			if json.Unmarshal(v, &add) != nil {
				continue
			}
			merged[k], _ = json.Marshal(append(tools, add...))
		default:
			if _, set := merged[k]; !set {
				merged[k] = v
			}
		}
	}
	return json.Marshal(merged)
}

// answer folds response parts into canonical content: consecutive text
// (or thought) parts merge into one part unless a signature closed it;
// function calls without ids get ids minted from the response id and
// their position.
type answer struct {
	respID string
	parts  []llm.Part
	calls  int
}

func (a *answer) add(p Part) {
	switch {
	case p.FunctionCall != nil:
		fc := p.FunctionCall
		id := fc.ID
		if id == "" {
			id = mintID(a.respID, strconv.Itoa(a.calls), fc.Name)
		}
		a.calls++
		a.parts = append(a.parts, llm.Part{Type: llm.PartToolCall, Signature: p.ThoughtSignature,
			ToolCall: &llm.ToolCall{ID: id, Name: fc.Name, Arguments: argsObject(fc.Args)}})
	case p.InlineData != nil || p.FileData != nil:
		if part, err := mediaPart(p, "part"); err == nil {
			a.parts = append(a.parts, part)
		}
	case p.Text != nil || p.ThoughtSignature != "":
		typ := llm.PartText
		if p.Thought {
			typ = llm.PartThinking
		}
		if n := len(a.parts); n > 0 && a.parts[n-1].Type == typ && a.parts[n-1].Signature == "" {
			a.parts[n-1].Text += deref(p.Text)
			a.parts[n-1].Signature = p.ThoughtSignature
			return
		}
		a.parts = append(a.parts, llm.Part{Type: typ, Text: deref(p.Text), Signature: p.ThoughtSignature})
	}
}

// upstreamError is the error for an unusable upstream answer.
func upstreamError(msg string) *llm.Error {
	return upstreamhttp.Unreadable("", &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: msg})
}

// streamError is the error for a stream that went wrong.
func streamError(msg string) *llm.Error {
	return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: msg}
}

// DecodeResponse reads a GenerateContentResponse from an upstream. A
// blocked prompt, or an answer withheld by a safety filter before any
// content, is an *llm.Error 400 with the block reason as Code.
func DecodeResponse(body []byte) (*llm.Response, error) {
	var probe struct {
		Error *ErrorDetail `json:"error"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.Error != nil {
		return nil, googleError(*probe.Error, 0)
	}
	var in GenerateContentResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, upstreamError("not a GenerateContentResponse")
	}
	if len(in.Candidates) == 0 {
		if pf := in.PromptFeedback; pf != nil && pf.BlockReason != "" {
			return nil, blockedError(pf.BlockReason, pf.BlockReasonMessage)
		}
		return nil, upstreamError("a response without candidates")
	}
	c := in.Candidates[0]
	a := answer{respID: in.ResponseID}
	if c.Content != nil {
		for _, p := range c.Content.Parts {
			a.add(p)
		}
	}
	if len(a.parts) == 0 && blockedFinish(c.FinishReason) {
		return nil, blockedError(c.FinishReason, c.FinishMessage)
	}
	return &llm.Response{ID: in.ResponseID, Model: in.ModelVersion, Content: a.parts,
		StopReason: stopReasonIn(c.FinishReason, a.calls > 0), Usage: usageIn(in.UsageMetadata)}, nil
}

// googleError maps Google's error object; status is the HTTP status, or
// 0 to take the object's own code (errors inside a 200 stream).
func googleError(d ErrorDetail, status int) *llm.Error {
	if status == 0 || status/100 == 2 {
		status = d.Code
		if status == 0 {
			status = http.StatusInternalServerError
		}
	}
	e := &llm.Error{Status: status, Type: llm.TypeForStatus(status), Code: d.Status, Message: d.Message}
	switch d.Status {
	case "RESOURCE_EXHAUSTED":
		e.Type = llm.ErrRateLimit
	case "UNAVAILABLE":
		e.Type = llm.ErrOverloaded
	case "DEADLINE_EXCEEDED":
		e.Type = llm.ErrTimeout
	case "UNAUTHENTICATED":
		e.Type = llm.ErrAuthentication
	case "PERMISSION_DENIED":
		e.Type = llm.ErrPermission
	}
	for _, raw := range d.Details {
		var det struct {
			Type       string `json:"@type"`
			Reason     string `json:"reason"`
			RetryDelay string `json:"retryDelay"`
		}
		if json.Unmarshal(raw, &det) != nil {
			continue
		}
		if det.Reason == "API_KEY_INVALID" {
			// Gemini answers a bad key with 400; it is the credential that
			// failed, so the router should try the next one.
			e.Status, e.Type = http.StatusUnauthorized, llm.ErrAuthentication
		}
		if d, err := time.ParseDuration(det.RetryDelay); err == nil && d > 0 {
			e.RetryAfter = d
		}
	}
	if e.Message == "" {
		e.Message = upstreamhttp.StatusText(status)
	}
	return e
}

// DecodeError maps an upstream error response: Google's error object
// (also inside a JSON array, as the non-SSE stream sends it), its status
// name and RetryInfo, and the Retry-After header.
func DecodeError(status int, header http.Header, body []byte) *llm.Error {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(body, &arr) == nil && len(arr) > 0 {
			body = arr[0]
		}
	}
	var e *llm.Error
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && (eb.Error.Message != "" || eb.Error.Status != "") {
		e = googleError(eb.Error, status)
	} else {
		e = &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: upstreamhttp.StatusText(status)}
	}
	if header != nil {
		if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// WithNative marks ctx as carrying a request from a Gemini-dialect
// client (see EncodeOptions.Native).
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectGemini)
}

// IsNative reports whether ctx was marked with WithNative.
func IsNative(ctx context.Context) bool {
	return llm.DialectOf(ctx) == llm.DialectGemini
}

// encodeCountTokens writes the body of :countTokens for the model
// resource name (models/…): {contents} when the request is only turns,
// else {generateContentRequest} with the model, the system instruction
// and the tools, which count too. Generation settings add no input and
// are left out, as are fields the canonical model does not carry.
func encodeCountTokens(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	w, err := wireRequest(r, opts)
	if err != nil {
		return nil, err
	}
	w.GenerationConfig = nil
	if w.SystemInstruction == nil && len(w.Tools) == 0 {
		return json.Marshal(CountTokensRequest{Contents: w.Contents})
	}
	w.Model = model
	return json.Marshal(CountTokensRequest{GenerateContentRequest: w})
}
