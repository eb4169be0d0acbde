package llm

import "testing"

// The default mapping is the one the adapters had built in: efforts to
// budgets, and budgets back to efforts at 2048 and 8192.
func TestDefaultEffortBudgets(t *testing.T) {
	var m *EffortBudgets // a request without a mapping
	for effort, want := range map[string]int{"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384} {
		if got, ok := m.Budget(effort); !ok || got != want {
			t.Errorf("Budget(%s) = %d, %v; want %d", effort, got, ok, want)
		}
	}
	for _, effort := range []string{"xhigh", "none", ""} {
		if _, ok := m.Budget(effort); ok {
			t.Errorf("Budget(%q) is known", effort)
		}
	}
	for budget, want := range map[int]string{-1: "medium", 0: "medium", 1: "low", 2048: "low", 2049: "medium", 8192: "medium", 8193: "high", 1 << 20: "high"} {
		if got := m.Effort(budget); got != want {
			t.Errorf("Effort(%d) = %s, want %s", budget, got, want)
		}
	}
	c := &EffortBudgets{Minimal: 0, Low: 100, Medium: 10000, High: 40000}
	for budget, want := range map[int]string{999: "low", 1001: "medium", 19999: "medium", 20001: "high"} {
		if got := c.Effort(budget); got != want {
			t.Errorf("configured Effort(%d) = %s, want %s", budget, got, want)
		}
	}
}
