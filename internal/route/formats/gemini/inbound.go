package gemini

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// Top-level request fields the canonical model holds; others go to
// Request.Extra and reach only Gemini upstreams.
var knownFields = map[string]bool{"model": true, "contents": true, "systemInstruction": true, "tools": true,
	"toolConfig": true, "generationConfig": true}

var knownGeneration = map[string]bool{"temperature": true, "topP": true, "topK": true, "maxOutputTokens": true,
	"stopSequences": true, "candidateCount": true, "seed": true, "presencePenalty": true, "frequencyPenalty": true,
	"responseMimeType": true, "responseSchema": true, "responseJsonSchema": true, "thinkingConfig": true}

// DecodeRequest turns a client's generateContent body into the canonical
// model; model comes from the URL. Failures are *llm.Error 400 naming the
// field. snake_case keys (as in Google's curl examples) are accepted.
func DecodeRequest(model string, body []byte, stream bool) (*llm.Request, error) {
	if model == "" {
		return nil, invalid("model: required in the URL (models/{model}:generateContent)")
	}
	if err := llm.CheckModel("model", model); err != nil {
		return nil, err
	}
	body = camelize(body)
	var in GenerateContentRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("request body is not a valid GenerateContentRequest: %v", err)
	}
	r, err := decodeGenerate(&in, "")
	if err != nil {
		return nil, err
	}
	r.Model, r.Stream, r.IncludeUsage = model, stream, stream
	if err := decodeExtra(r, body); err != nil {
		return nil, err
	}
	return r, nil
}

// decodeExtra keeps what the canonical model cannot hold: unknown
// top-level fields, unknown generationConfig fields and non-function tools.
func decodeExtra(r *llm.Request, body []byte) error {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return nil
	}
	set := func(k string, v json.RawMessage) {
		if r.Extra == nil {
			r.Extra = map[string]json.RawMessage{}
		}
		r.Extra[k] = v
	}
	for k, v := range raw {
		if !knownFields[k] {
			set(k, v)
		}
	}
	var gc map[string]json.RawMessage
	if json.Unmarshal(raw["generationConfig"], &gc) == nil {
		rest := map[string]json.RawMessage{}
		for k, v := range gc {
			if !knownGeneration[k] {
				rest[k] = v
			}
		}
		if mt := string(gc["responseMimeType"]); mt != "" && mt != `"application/json"` && mt != `"text/plain"` {
			// Enum output and other types have no canonical form.
			rest["responseMimeType"] = gc["responseMimeType"]
			if s, ok := gc["responseSchema"]; ok {
				rest["responseSchema"] = s
			}
		}
		if len(rest) > 0 {
			b, _ := json.Marshal(rest)
			set("generationConfig", b)
		}
	}
	var tools []map[string]json.RawMessage
	if json.Unmarshal(raw["tools"], &tools) == nil {
		var other []map[string]json.RawMessage
		for _, t := range tools {
			delete(t, "functionDeclarations")
			if len(t) > 0 {
				other = append(other, t)
			}
		}
		if len(other) > 0 {
			b, _ := json.Marshal(other)
			set("tools", b)
		}
	}
	return nil
}

// decodeGenerate converts a parsed request; prefix names its place in
// the body for error messages.
func decodeGenerate(in *GenerateContentRequest, prefix string) (*llm.Request, error) {
	r := &llm.Request{}
	if si := in.SystemInstruction; si != nil {
		for j, p := range si.Parts {
			if p.Text == nil {
				return nil, invalid("%ssystemInstruction.parts[%d]: only text parts are supported", prefix, j)
			}
			if *p.Text != "" {
				r.System = append(r.System, llm.Part{Type: llm.PartText, Text: *p.Text})
			}
		}
	}
	for i, t := range in.Tools {
		for j, fd := range t.FunctionDeclarations {
			if fd.Name == "" {
				return nil, invalid("%stools[%d].functionDeclarations[%d].name: required", prefix, i, j)
			}
			params := fd.ParametersJSONSchema
			if len(params) == 0 {
				params = normalizeSchema(fd.Parameters)
			}
			r.Tools = append(r.Tools, llm.Tool{Name: fd.Name, Description: fd.Description, Parameters: params})
		}
	}
	if tc := in.ToolConfig; tc != nil && tc.FunctionCallingConfig != nil {
		fc := tc.FunctionCallingConfig
		switch strings.ToUpper(fc.Mode) {
		case "", "AUTO", "VALIDATED", "MODE_UNSPECIFIED":
			r.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceAuto}
		case "NONE":
			r.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceNone}
		case "ANY":
			r.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceRequired}
			if len(fc.AllowedFunctionNames) == 1 {
				r.ToolChoice = &llm.ToolChoice{Mode: llm.ToolChoiceTool, Name: fc.AllowedFunctionNames[0]}
			}
		default:
			return nil, invalid("%stoolConfig.functionCallingConfig.mode: %q is not AUTO, ANY, NONE or VALIDATED", prefix, fc.Mode)
		}
	}
	if gc := in.GenerationConfig; gc != nil {
		if err := decodeGeneration(r, gc, prefix); err != nil {
			return nil, err
		}
	}
	if err := decodeContents(r, in.Contents, prefix); err != nil {
		return nil, err
	}
	return r, nil
}

func decodeGeneration(r *llm.Request, gc *GenerationConfig, prefix string) error {
	if gc.CandidateCount != nil && *gc.CandidateCount > 1 {
		return invalid("%sgenerationConfig.candidateCount: only one candidate is supported", prefix)
	}
	r.Temperature, r.TopP, r.MaxTokens, r.Seed = gc.Temperature, gc.TopP, gc.MaxOutputTokens, gc.Seed
	r.PresencePenalty, r.FrequencyPenalty, r.Stop = gc.PresencePenalty, gc.FrequencyPenalty, gc.StopSequences
	if gc.MaxOutputTokens != nil && *gc.MaxOutputTokens < 0 {
		return invalid("%sgenerationConfig.maxOutputTokens: must not be negative", prefix)
	}
	if gc.TopK != nil {
		k := int(*gc.TopK)
		r.TopK = &k
	}
	if gc.ResponseMIMEType == "application/json" {
		rf := &llm.ResponseFormat{Type: "json_object"}
		switch {
		case len(gc.ResponseJSONSchema) > 0:
			rf = &llm.ResponseFormat{Type: "json_schema", Name: "response", Schema: gc.ResponseJSONSchema}
		case len(gc.ResponseSchema) > 0:
			rf = &llm.ResponseFormat{Type: "json_schema", Name: "response", Schema: normalizeSchema(gc.ResponseSchema)}
		}
		r.ResponseFormat = rf
	}
	if tc := gc.ThinkingConfig; tc != nil {
		rs := &llm.Reasoning{Enabled: true}
		if b := tc.ThinkingBudget; b != nil {
			switch {
			case *b == 0:
				rs.Enabled = false
			case *b > 0:
				rs.BudgetTokens = *b
			case *b != -1:
				return invalid("%sgenerationConfig.thinkingConfig.thinkingBudget: must be -1, 0 or positive", prefix)
			}
		}
		if lv := tc.ThinkingLevel; lv != "" && lv != "THINKING_LEVEL_UNSPECIFIED" {
			switch l := strings.ToLower(lv); l {
			case "minimal", "low", "medium", "high":
				rs.Effort = l
			default:
				return invalid("%sgenerationConfig.thinkingConfig.thinkingLevel: %q is not MINIMAL, LOW, MEDIUM or HIGH", prefix, lv)
			}
		}
		if tc.IncludeThoughts {
			rs.Summary = "auto"
		}
		r.Reasoning = rs
	}
	return nil
}

// decodeContents converts the turns. A user turn's functionResponse parts
// become one RoleTool message each, with the turn's other parts kept as
// user messages around them in order. Calls without ids get minted ones;
// responses pair with calls by id, else by name.
func decodeContents(r *llm.Request, contents []Content, prefix string) error {
	var calls []*llm.ToolCall // calls of the latest model turn
	answered := map[*llm.ToolCall]bool{}
	for i, c := range contents {
		field := fmt.Sprintf("%scontents[%d]", prefix, i)
		switch c.Role {
		case "model":
			msg := llm.Message{Role: llm.RoleAssistant}
			calls = nil
			for j, p := range c.Parts {
				pf := fmt.Sprintf("%s.parts[%d]", field, j)
				switch {
				case p.FunctionCall != nil:
					fc := p.FunctionCall
					if fc.Name == "" {
						return invalid("%s.functionCall.name: required", pf)
					}
					if len(bytes.TrimSpace(fc.Args)) > 0 && string(bytes.TrimSpace(fc.Args)) != "null" && !isObject(fc.Args) {
						return invalid("%s.functionCall.args: must be an object", pf)
					}
					id := fc.ID
					if id == "" {
						id = mintID(strconv.Itoa(i), strconv.Itoa(j), fc.Name)
					}
					tc := &llm.ToolCall{ID: id, Name: fc.Name, Arguments: argsObject(fc.Args)}
					msg.Parts = append(msg.Parts, llm.Part{Type: llm.PartToolCall, ToolCall: tc, Signature: p.ThoughtSignature})
					calls = append(calls, tc)
				case p.FunctionResponse != nil:
					return invalid("%s.functionResponse: function responses belong in a user turn", pf)
				default:
					part, ok, err := contentPart(p, pf)
					if err != nil {
						return err
					}
					if ok {
						msg.Parts = append(msg.Parts, part)
					}
				}
			}
			r.Messages = append(r.Messages, msg)
		case "", "user", "function":
			var pending []llm.Part
			flush := func() {
				if len(pending) > 0 {
					r.Messages = append(r.Messages, llm.Message{Role: llm.RoleUser, Parts: pending})
					pending = nil
				}
			}
			for j, p := range c.Parts {
				pf := fmt.Sprintf("%s.parts[%d]", field, j)
				if fr := p.FunctionResponse; fr != nil {
					if fr.Name == "" && fr.ID == "" {
						return invalid("%s.functionResponse.name: required", pf)
					}
					res, err := toolResult(fr, pf)
					if err != nil {
						return err
					}
					res.CallID = pairCall(calls, answered, fr, i, j)
					if res.Name == "" {
						for _, tc := range calls {
							if tc.ID == res.CallID {
								res.Name = tc.Name
							}
						}
					}
					flush()
					r.Messages = append(r.Messages, llm.Message{Role: llm.RoleTool, Parts: []llm.Part{{Type: llm.PartToolResult, ToolResult: res}}})
					continue
				}
				if p.FunctionCall != nil {
					return invalid("%s.functionCall: function calls belong in a model turn", pf)
				}
				part, ok, err := contentPart(p, pf)
				if err != nil {
					return err
				}
				if ok {
					if part.Type == llm.PartThinking {
						part = llm.Part{Type: llm.PartText, Text: part.Text}
					}
					part.Signature = ""
					pending = append(pending, part)
				}
			}
			flush()
		default:
			return invalid("%s.role: %q is not user or model", field, c.Role)
		}
	}
	return nil
}

// pairCall finds the id of the call a response answers: its own id, else
// the first unanswered call of that name in the latest model turn.
func pairCall(calls []*llm.ToolCall, answered map[*llm.ToolCall]bool, fr *FunctionResponse, i, j int) string {
	if fr.ID != "" {
		for _, tc := range calls {
			if tc.ID == fr.ID {
				answered[tc] = true
			}
		}
		return fr.ID
	}
	for _, tc := range calls {
		if tc.Name == fr.Name && !answered[tc] {
			answered[tc] = true
			return tc.ID
		}
	}
	return mintID("response", strconv.Itoa(i), strconv.Itoa(j), fr.Name)
}

// toolResult converts a functionResponse: its response object becomes the
// result text (compact JSON); {"error": …} alone marks a failure. An
// object holding only a "result" or "error" string — what the outbound
// side writes for plain text — gives back that text.
func toolResult(fr *FunctionResponse, field string) (*llm.ToolResult, error) {
	raw := bytes.TrimSpace(fr.Response)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, invalid("%s.functionResponse.response: must be an object", field)
	}
	_, hasErr := obj["error"]
	if len(obj) == 1 {
		for _, key := range []string{"result", "error"} {
			var text string
			if v, ok := obj[key]; ok && json.Unmarshal(v, &text) == nil {
				return &llm.ToolResult{Name: fr.Name, Content: []llm.Part{{Type: llm.PartText, Text: text}}, IsError: key == "error"}, nil
			}
		}
	}
	var b bytes.Buffer
	_ = json.Compact(&b, raw)
	return &llm.ToolResult{Name: fr.Name, Content: []llm.Part{{Type: llm.PartText, Text: b.String()}},
		IsError: hasErr && len(obj) == 1}, nil
}

// contentPart converts a text, thought or media part; ok is false for a
// part without data.
func contentPart(p Part, field string) (llm.Part, bool, error) {
	switch {
	case p.InlineData != nil || p.FileData != nil:
		part, err := mediaPart(p, field)
		return part, err == nil, err
	case p.Thought:
		return llm.Part{Type: llm.PartThinking, Text: deref(p.Text), Signature: p.ThoughtSignature}, true, nil
	case p.Text != nil || p.ThoughtSignature != "":
		return llm.Part{Type: llm.PartText, Text: deref(p.Text), Signature: p.ThoughtSignature}, true, nil
	}
	return llm.Part{}, false, nil
}

// DecodeCountTokens reads a :countTokens body ({contents} or
// {generateContentRequest}) into a canonical request.
func DecodeCountTokens(model string, body []byte) (*llm.Request, error) {
	if err := llm.CheckModel("model", model); err != nil {
		return nil, err
	}
	body = camelize(body)
	var in CountTokensRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, invalid("request body is not a valid CountTokensRequest: %v", err)
	}
	var r *llm.Request
	var err error
	if in.GenerateContentRequest != nil {
		r, err = decodeGenerate(in.GenerateContentRequest, "generateContentRequest.")
	} else {
		r, err = decodeGenerate(&GenerateContentRequest{Contents: in.Contents}, "")
	}
	if err != nil {
		return nil, err
	}
	r.Model = model
	return r, nil
}
