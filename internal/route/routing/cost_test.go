package routing_test

import (
	"math"
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

func TestCost(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	m := e.App.State
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	// Built-in gpt-4o: 2.5 in, 10 out, 1.25 cache read per million.
	got, ok := m.Cost("openai", "gpt-4o", llm.Usage{InputTokens: 1000, OutputTokens: 500, CacheReadTokens: 2000})
	if !ok || !near(got, (1000*2.5+500*10+2000*1.25)/1e6) {
		t.Fatalf("gpt-4o cost %v %v", got, ok)
	}
	// No cache-write price: written tokens cost as input.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "acme/*", "input": 1, "output": 2})
	if got, ok := m.Cost("acme", "anything", llm.Usage{InputTokens: 10, CacheWriteTokens: 10, CacheReadTokens: 10, OutputTokens: 10}); !ok || !near(got, (10+10+10+20)/1e6) {
		t.Fatalf("override cost %v %v", got, ok)
	}
	if got, ok := m.EstimateCost("acme", "x", 100, 50); !ok || !near(got, (100+100)/1e6) {
		t.Fatalf("estimate %v %v", got, ok)
	}
	if got, ok := m.Cost("nobody", "unknown-model", llm.Usage{InputTokens: 5}); ok || got != 0 {
		t.Fatalf("unknown model cost %v %v", got, ok)
	}
	// Built-in unit prices: a minute of Whisper, a thousand characters
	// of TTS HD, two DALL·E 3 images, eight seconds of Sora.
	for _, c := range []struct {
		model string
		q     llm.Quantity
		want  float64
	}{
		{"whisper-1", llm.Quantity{Unit: llm.UnitSecond, N: 60}, 0.006},
		{"tts-1-hd", llm.Quantity{Unit: llm.UnitCharacter, N: 1000}, 0.03},
		{"dall-e-3", llm.Quantity{Unit: llm.UnitImage, N: 2}, 0.08},
		{"sora-2", llm.Quantity{Unit: llm.UnitSecond, N: 8}, 0.8},
	} {
		if got, ok := m.UnitCost("openai", c.model, []llm.Quantity{c.q}, llm.Usage{}); !ok || !near(got, c.want) {
			t.Errorf("%s: %d %s cost %v %v, want %v", c.model, c.q.N, c.q.Unit, got, ok, c.want)
		}
	}
}
