package llm

import (
	"context"
	"testing"
)

// A request's context carries one dialect: unmarked it has none, and a
// later mark replaces an earlier one rather than adding a second.
func TestDialectOf(t *testing.T) {
	ctx := context.Background()
	if d := DialectOf(ctx); d != "" {
		t.Fatalf("unmarked context: dialect %q, want none", d)
	}
	ctx = WithDialect(ctx, DialectAnthropic)
	if d := DialectOf(ctx); d != DialectAnthropic {
		t.Fatalf("dialect %q, want %q", d, DialectAnthropic)
	}
	if d := DialectOf(WithDialect(ctx, DialectGemini)); d != DialectGemini {
		t.Fatalf("re-marked context: dialect %q, want %q", d, DialectGemini)
	}
}
