package api

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

func conv(text string) Conversation {
	return Conversation{Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: text}}}},
		Response: json.RawMessage(`{}`)}
}

func TestResponsesMemoryStoreBounds(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	m := NewMemoryResponseStore(3, 1<<20, time.Hour, clk)
	for i := range 4 {
		if err := m.Put(ctx, fmt.Sprint(i), conv("x")); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			m.Get(ctx, "0") // 0 is now more recent than 1
		}
	}
	if _, ok, _ := m.Get(ctx, "1"); ok || m.Len() != 3 {
		t.Fatalf("least recently used not evicted (len %d)", m.Len())
	}
	if c, ok, _ := m.Get(ctx, "0"); !ok || c.Messages[0].Parts[0].Text != "x" {
		t.Fatal("recently used evicted")
	}
	// Total size: a big conversation pushes out older ones; one larger
	// than the budget is not kept.
	small := conversationSize(conv("x"))
	m = NewMemoryResponseStore(100, 3*small, time.Hour, clk)
	for i := range 3 {
		_ = m.Put(ctx, fmt.Sprint(i), conv("x"))
	}
	_ = m.Put(ctx, "big", conv("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"))
	if _, ok, _ := m.Get(ctx, "0"); ok || m.bytes > 3*small {
		t.Fatalf("byte bound not kept: %d > %d", m.bytes, 3*small)
	}
	_ = m.Put(ctx, "huge", conv(string(make([]byte, 10*small))))
	if _, ok, _ := m.Get(ctx, "huge"); ok {
		t.Fatal("conversation above the whole budget kept")
	}
	// TTL and delete.
	m = NewMemoryResponseStore(0, 0, time.Minute, clk)
	_ = m.Put(ctx, "a", conv("x"))
	_ = m.Put(ctx, "b", conv("x"))
	clk.Advance(59 * time.Second)
	if _, ok, _ := m.Get(ctx, "a"); !ok {
		t.Fatal("expired early")
	}
	if ok, _ := m.Delete(ctx, "b"); !ok {
		t.Fatal("delete of a stored response")
	}
	if ok, _ := m.Delete(ctx, "b"); ok {
		t.Fatal("second delete found it")
	}
	clk.Advance(time.Second)
	if _, ok, _ := m.Get(ctx, "a"); ok || m.Len() != 0 {
		t.Fatal("not expired after the TTL")
	}
}
