package prompting

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/route/llm"
)

// Keys of the route store's settings table, each holding a JSON document.
const (
	SettingSystemPrompt   = "system_prompt"
	SettingThinkingBudget = "thinking_budget"
)

// Caps of the system prompt document.
const (
	MaxPromptBytes  = 32 << 10 // the prompt's length in bytes
	MaxExcludedKeys = 1000     // entries of exclude_keys
	MaxKeyIDBytes   = 128      // one entry of exclude_keys
)

// System prompt modes: where the prompt goes among the request's own
// system parts.
const (
	Prepend = "prepend"
	Append  = "append"
)

// Thinking budget modes.
const (
	// Passthrough leaves every request's reasoning as the client sent it;
	// only the effort mapping applies.
	Passthrough = "passthrough"
	// Default gives DefaultBudget to a request that asks for reasoning
	// naming neither a budget nor an effort.
	Default = "default"
	// Force gives DefaultBudget to every request that asks for reasoning,
	// in place of its own budget or effort.
	Force = "force"
)

// SystemPrompt is the global system prompt setting.
type SystemPrompt struct {
	Enabled bool   `json:"enabled"`
	Prompt  string `json:"prompt"`
	Mode    string `json:"mode"`
	// ExcludeKeys are ids of gateway keys whose requests get no prompt.
	ExcludeKeys []string `json:"exclude_keys"`
}

// DefaultSystemPrompt is the setting before any is stored: disabled.
func DefaultSystemPrompt() SystemPrompt {
	return SystemPrompt{Mode: Prepend, ExcludeKeys: []string{}}
}

// Validate checks the caps and values of s.
func (s *SystemPrompt) Validate() error {
	switch {
	case s.Mode != Prepend && s.Mode != Append:
		return fmt.Errorf("mode: %q is not %q or %q", s.Mode, Prepend, Append)
	case len(s.Prompt) > MaxPromptBytes:
		return fmt.Errorf("prompt: %d bytes, at most %d", len(s.Prompt), MaxPromptBytes)
	case !utf8.ValidString(s.Prompt):
		return fmt.Errorf("prompt: not valid UTF-8")
	case s.Enabled && strings.TrimSpace(s.Prompt) == "":
		return fmt.Errorf("prompt: required when enabled")
	case len(s.ExcludeKeys) > MaxExcludedKeys:
		return fmt.Errorf("exclude_keys: %d entries, at most %d", len(s.ExcludeKeys), MaxExcludedKeys)
	}
	for i, k := range s.ExcludeKeys {
		if k == "" || len(k) > MaxKeyIDBytes || strings.IndexFunc(k, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsGraphic(r) || r == ' ' }) >= 0 {
			return fmt.Errorf("exclude_keys[%d]: a key id is 1 to %d printable ASCII characters without spaces", i, MaxKeyIDBytes)
		}
	}
	return nil
}

// normalize sorts and dedupes the excluded keys.
func (s *SystemPrompt) normalize() {
	if s.ExcludeKeys == nil {
		s.ExcludeKeys = []string{}
	}
	slices.Sort(s.ExcludeKeys)
	s.ExcludeKeys = slices.Compact(s.ExcludeKeys)
}

// ThinkingBudget is the thinking budget setting.
type ThinkingBudget struct {
	Mode string `json:"mode"`
	// DefaultBudget is the budget in tokens the Default and Force modes
	// give.
	DefaultBudget int `json:"default_budget"`
	// Efforts maps each effort to the budget, in tokens, that adapters of
	// budget-taking upstreams send for it, and budgets back to efforts.
	Efforts llm.EffortBudgets `json:"efforts"`
}

// DefaultThinkingBudget is the setting before any is stored: requests
// pass through with the adapters' built-in mapping.
func DefaultThinkingBudget() ThinkingBudget {
	e := llm.DefaultEffortBudgets()
	return ThinkingBudget{Mode: Passthrough, DefaultBudget: e.Medium, Efforts: e}
}

// Validate checks the values of t: budgets between 0 (1 for the default
// budget) and llm.MaxThinkingBudget, increasing with effort.
func (t *ThinkingBudget) Validate() error {
	switch t.Mode {
	case Passthrough, Default, Force:
	default:
		return fmt.Errorf("mode: %q is not %q, %q or %q", t.Mode, Passthrough, Default, Force)
	}
	if t.DefaultBudget < 1 || t.DefaultBudget > llm.MaxThinkingBudget {
		return fmt.Errorf("default_budget: %d is not between 1 and %d", t.DefaultBudget, llm.MaxThinkingBudget)
	}
	e := t.Efforts
	for _, f := range []struct {
		name string
		v    int
	}{{"minimal", e.Minimal}, {"low", e.Low}, {"medium", e.Medium}, {"high", e.High}} {
		if f.v < 0 || f.v > llm.MaxThinkingBudget {
			return fmt.Errorf("efforts.%s: %d is not between 0 and %d", f.name, f.v, llm.MaxThinkingBudget)
		}
	}
	switch {
	case e.Minimal > e.Low:
		return fmt.Errorf("efforts: minimal (%d) is above low (%d)", e.Minimal, e.Low)
	case e.Low >= e.Medium:
		return fmt.Errorf("efforts: low (%d) must be below medium (%d)", e.Low, e.Medium)
	case e.Medium >= e.High:
		return fmt.Errorf("efforts: medium (%d) must be below high (%d)", e.Medium, e.High)
	}
	return nil
}
