package router

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// An operation attempt that outlives its connection's Timeout is a
// retryable 504: the next target answers.
func TestDoTimeoutFallsBack(t *testing.T) {
	tbl := NewTable()
	tbl.SetProvider("slow", []Connection{{ID: "slow#1", Adapter: &fake{name: "slow"}, Timeout: 20 * time.Millisecond}})
	tbl.SetProvider("fast", []Connection{{ID: "fast#1", Adapter: &fake{name: "fast"}}})
	tbl.SetCombo(Combo{Name: "c", Strategy: "priority", Targets: []Target{{Provider: "slow", Model: "m"}, {Provider: "fast", Model: "m"}}})
	r := New(tbl, clock.Real{})
	res, err := r.Do(context.Background(), "c", func(ctx context.Context, c Connection, t Target) error {
		if t.Provider == "slow" {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Target.Provider != "fast" || len(res.Attempts) != 2 || res.Attempts[0].Status != http.StatusGatewayTimeout {
		t.Fatalf("result %+v", res)
	}
	// A client error is not retried elsewhere.
	_, err = r.Do(context.Background(), "c", func(context.Context, Connection, Target) error {
		return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Message: "bad documents"}
	})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || len(ex.Attempts) != 1 || ex.Last.Status != http.StatusBadRequest {
		t.Fatalf("client error: %v", err)
	}
}
