package resilience_test

import (
	"context"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/resilience"
	"github.com/omniedge/omni/internal/route/router"
)

// BenchmarkRouterChat is the router's hot path with the tracker
// installed: "idle" has no troubled connection anywhere (the lock-free
// path), "active" has another provider's connection cooling down, so
// every check reads the maps.
func BenchmarkRouterChat(b *testing.B) {
	for _, name := range []string{"idle", "active"} {
		b.Run(name, func(b *testing.B) {
			tr, err := resilience.New(context.Background(), resilience.Options{Clock: clock.Real{}})
			if err != nil {
				b.Fatal(err)
			}
			if name == "active" {
				tr.Observe("other", "other#1", "m", 429, 0)
			}
			ad := okAdapter{resp: &llm.Response{ID: "a", Content: []llm.Part{{Type: llm.PartText, Text: "a"}}}}
			tbl := router.NewTable()
			tbl.SetProvider("p", []router.Connection{{ID: "p#1", Adapter: ad}, {ID: "p#2", Adapter: ad}})
			rt := router.New(tbl, clock.Real{})
			rt.SetHealth(tr)
			req := &llm.Request{Model: "p/m"}
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := rt.Chat(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// okAdapter answers every call at once with the same response, like the
// router package's benchmark.
type okAdapter struct{ resp *llm.Response }

func (a okAdapter) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	return a.resp, nil
}

func (a okAdapter) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	return &llm.SliceStream{Events: llm.Events(a.resp)}, nil
}
