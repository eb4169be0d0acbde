package router

import (
	"context"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// okAdapter answers every call at once, so a benchmark measures the
// router itself.
type okAdapter struct{ resp *llm.Response }

func (a okAdapter) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	return a.resp, nil
}

func (a okAdapter) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	return &llm.SliceStream{Events: llm.Events(a.resp)}, nil
}

func benchRouter() *Router {
	tbl := NewTable()
	ad := okAdapter{resp: okResponse("p")}
	tbl.SetProvider("p", []Connection{{ID: "p#1", Adapter: ad}, {ID: "p#2", Adapter: ad}})
	return New(tbl, clock.Real{})
}

// BenchmarkChat is the router's hot path: resolve, order, one
// successful attempt over two connections.
func BenchmarkChat(b *testing.B) {
	r := benchRouter()
	req := &llm.Request{Model: "p/m"}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Chat(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
