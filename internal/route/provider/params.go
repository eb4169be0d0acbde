package provider

import (
	"path"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
)

// Parameter names a ParamRule can drop: the canonical request's sampling
// and shaping fields.
const (
	ParamTemperature       = "temperature"
	ParamTopP              = "top_p"
	ParamTopK              = "top_k"
	ParamPresencePenalty   = "presence_penalty"
	ParamFrequencyPenalty  = "frequency_penalty"
	ParamSeed              = "seed"
	ParamStop              = "stop"
	ParamParallelToolCalls = "parallel_tool_calls"
	ParamResponseFormat    = "response_format"
	ParamReasoning         = "reasoning"
)

// ParamNames lists every parameter a rule may name.
var ParamNames = []string{ParamTemperature, ParamTopP, ParamTopK, ParamPresencePenalty, ParamFrequencyPenalty,
	ParamSeed, ParamStop, ParamParallelToolCalls, ParamResponseFormat, ParamReasoning}

// ParamRule adapts requests for models that reject some parameters:
// upstreams answer 400 to them, which no fallback fixes.
type ParamRule struct {
	Type  string   `yaml:"type" json:"type,omitempty"` // provider type; "" matches any
	Model string   `yaml:"model" json:"model"`         // glob on the upstream model name
	Drop  []string `yaml:"drop" json:"drop,omitempty"` // parameters removed
	// OneOf keeps only the first of these parameters the request sets
	// (Anthropic's newer models refuse temperature and top_p together).
	OneOf []string `yaml:"one_of" json:"one_of,omitempty"`
}

// BuiltinParamRules are the known constraints of well-known models.
var BuiltinParamRules = []ParamRule{
	// OpenAI reasoning models accept only the default sampling.
	{Type: "openai", Model: "o[1-9]*", Drop: []string{ParamTemperature, ParamTopP, ParamPresencePenalty, ParamFrequencyPenalty}},
	{Type: "openai", Model: "gpt-5*", Drop: []string{ParamTemperature, ParamTopP, ParamPresencePenalty, ParamFrequencyPenalty}},
	{Type: "openai-responses", Model: "o[1-9]*", Drop: []string{ParamTemperature, ParamTopP, ParamPresencePenalty, ParamFrequencyPenalty}},
	{Type: "openai-responses", Model: "gpt-5*", Drop: []string{ParamTemperature, ParamTopP, ParamPresencePenalty, ParamFrequencyPenalty}},
	// Anthropic's 4.x models take temperature or top_p, not both.
	{Type: "anthropic", Model: "claude-*-4*", OneOf: []string{ParamTemperature, ParamTopP}},
}

// ValidateParamRules checks globs and parameter names.
func ValidateParamRules(rules []ParamRule) error {
	for _, r := range rules {
		if _, err := path.Match(r.Model, ""); err != nil || r.Model == "" {
			return &llm.Error{Status: 400, Type: llm.ErrInvalidRequest, Message: "parameter rule: model must be a glob pattern, got " + r.Model}
		}
		for _, p := range append(append([]string(nil), r.Drop...), r.OneOf...) {
			if !known(p) {
				return &llm.Error{Status: 400, Type: llm.ErrInvalidRequest, Message: "parameter rule: unknown parameter " + p + " (known: " + strings.Join(ParamNames, ", ") + ")"}
			}
		}
	}
	return nil
}

func known(p string) bool {
	for _, n := range ParamNames {
		if n == p {
			return true
		}
	}
	return false
}

// Preparer returns the request adapter for connections of a provider of
// type typ: the built-in rules of that type, then extra (from
// configuration). It returns nil when no rule can apply, so the router
// skips the call.
func Preparer(typ string, extra []ParamRule) func(*llm.Request, string) *llm.Request {
	var rules []ParamRule
	for _, r := range append(append([]ParamRule(nil), BuiltinParamRules...), extra...) {
		if r.Type == "" || r.Type == typ {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	return func(req *llm.Request, model string) *llm.Request {
		var out *llm.Request
		clone := func() *llm.Request {
			if out == nil {
				c := *req
				out = &c
			}
			return out
		}
		for _, r := range rules {
			if ok, _ := path.Match(r.Model, model); !ok {
				continue
			}
			for _, p := range r.Drop {
				if isSet(cur(req, out), p) {
					unset(clone(), p)
				}
			}
			kept := false
			for _, p := range r.OneOf {
				if !isSet(cur(req, out), p) {
					continue
				}
				if kept {
					unset(clone(), p)
				}
				kept = true
			}
		}
		return cur(req, out)
	}
}

func cur(req, out *llm.Request) *llm.Request {
	if out != nil {
		return out
	}
	return req
}

func isSet(r *llm.Request, p string) bool {
	switch p {
	case ParamTemperature:
		return r.Temperature != nil
	case ParamTopP:
		return r.TopP != nil
	case ParamTopK:
		return r.TopK != nil
	case ParamPresencePenalty:
		return r.PresencePenalty != nil
	case ParamFrequencyPenalty:
		return r.FrequencyPenalty != nil
	case ParamSeed:
		return r.Seed != nil
	case ParamStop:
		return len(r.Stop) > 0
	case ParamParallelToolCalls:
		return r.ParallelToolCalls != nil
	case ParamResponseFormat:
		return r.ResponseFormat != nil
	case ParamReasoning:
		return r.Reasoning != nil
	}
	return false
}

func unset(r *llm.Request, p string) {
	switch p {
	case ParamTemperature:
		r.Temperature = nil
	case ParamTopP:
		r.TopP = nil
	case ParamTopK:
		r.TopK = nil
	case ParamPresencePenalty:
		r.PresencePenalty = nil
	case ParamFrequencyPenalty:
		r.FrequencyPenalty = nil
	case ParamSeed:
		r.Seed = nil
	case ParamStop:
		r.Stop = nil
	case ParamParallelToolCalls:
		r.ParallelToolCalls = nil
	case ParamResponseFormat:
		r.ResponseFormat = nil
	case ParamReasoning:
		r.Reasoning = nil
	}
}
