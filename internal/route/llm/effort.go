package llm

import "math"

// MaxThinkingBudget is the largest thinking budget, in tokens, an effort
// may be mapped to.
const MaxThinkingBudget = 131072

// EffortBudgets maps reasoning efforts to thinking budgets in tokens, for
// the adapters of upstreams that take a budget (Anthropic budget_tokens,
// Gemini thinkingBudget), and budgets back to efforts for those that take
// an effort. The zero value is not usable; DefaultEffortBudgets is the
// mapping of a request that carries none.
type EffortBudgets struct {
	Minimal int `json:"minimal"`
	Low     int `json:"low"`
	Medium  int `json:"medium"`
	High    int `json:"high"`
}

// DefaultEffortBudgets is the mapping used when a request carries none.
func DefaultEffortBudgets() EffortBudgets {
	return EffortBudgets{Minimal: 1024, Low: 1024, Medium: 4096, High: 16384}
}

// Budget returns the thinking budget of effort; ok is false for an
// effort the mapping does not name (xhigh, none, unknown), which each
// adapter handles itself. A nil mapping is DefaultEffortBudgets.
func (b *EffortBudgets) Budget(effort string) (tokens int, ok bool) {
	m := b.orDefault()
	switch effort {
	case "minimal":
		return m.Minimal, true
	case "low":
		return m.Low, true
	case "medium":
		return m.Medium, true
	case "high":
		return m.High, true
	}
	return 0, false
}

// Effort returns the effort (low, medium or high) whose budget is
// nearest to tokens on a logarithmic scale: the thresholds are the
// geometric means of neighbouring budgets. A budget of 0 or less is
// medium. A nil mapping is DefaultEffortBudgets.
func (b *EffortBudgets) Effort(tokens int) string {
	m := b.orDefault()
	switch t := float64(tokens); {
	case tokens <= 0:
		return "medium"
	case t <= math.Sqrt(float64(m.Low)*float64(m.Medium)):
		return "low"
	case t <= math.Sqrt(float64(m.Medium)*float64(m.High)):
		return "medium"
	}
	return "high"
}

func (b *EffortBudgets) orDefault() EffortBudgets {
	if b == nil {
		return DefaultEffortBudgets()
	}
	return *b
}
