package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// Operation makes one attempt of a non-chat operation (rerank,
// moderation …) at connection c of target t, whose upstream name is
// t.Model. It type-asserts c.Adapter to the capability it needs and
// returns an *UnsupportedError when the adapter has none, so that the
// router tries the next target without holding it against the
// provider's health.
type Operation func(ctx context.Context, c Connection, t Target) error

// UnsupportedError is an Operation's answer for a connection whose
// provider type does not serve the operation.
type UnsupportedError struct {
	Provider string
	What     string // "rerank", "moderations" …
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("provider %s does not serve %s", e.Provider, e.What)
}

// OpResult is what a successful operation answered from.
type OpResult struct {
	Target   Target
	Attempts []Attempt
}

// Do runs op with the fallback of Chat: the targets of model in strategy
// order, each connection round-robin, the health tracker consulted
// before and told after each attempt, and the next connection or target
// tried on connection errors, 408, 429 and 5xx. A connection whose
// adapter does not serve the operation is skipped (its attempt is
// recorded as a 400); when none does, the answer is that 400. A
// connection's Timeout bounds each whole attempt (a retryable 504).
func (r *Router) Do(ctx context.Context, model string, op Operation) (*OpResult, error) {
	t, attempts, err := r.run(ctx, model, func(actx context.Context, c Connection, t Target, tr *attemptTrace) error {
		if c.Timeout <= 0 {
			return op(actx, c, t)
		}
		tctx, cancel := context.WithTimeout(actx, c.Timeout)
		defer cancel()
		err := op(tctx, c, t)
		if err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded) && actx.Err() == nil {
			tr.timedOut.Store(true)
			return &llm.Error{Status: http.StatusGatewayTimeout, Type: llm.ErrTimeout, Provider: t.Provider,
				Message: fmt.Sprintf("%s: upstream unreachable: no answer within %s", t.Provider, c.Timeout)}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &OpResult{Target: t, Attempts: attempts}, nil
}

// unsupported is the attempt and the error of a connection whose adapter
// does not serve an operation; ok is false for any other error.
func unsupported(err error, t Target, c Connection) (Attempt, *llm.Error, bool) {
	var ue *UnsupportedError
	if !errors.As(err, &ue) {
		return Attempt{}, nil, false
	}
	le := &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Provider: t.Provider, Message: ue.Error()}
	return Attempt{Provider: t.Provider, Model: t.Model, Connection: c.ID, Status: le.Status, Error: le.Message}, le, true
}
