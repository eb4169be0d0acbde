package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// scorer is an adapter of a modality beyond chat: it answers with billed
// search units, or fails with err.
type scorer struct {
	adapter
	err error
}

// opEngine routes to two providers: "bad" (failing) and "good".
func opEngine(st pipeline.Stages, bad, good router.Adapter) *pipeline.Engine {
	table := router.NewTable()
	table.SetProvider("bad", []router.Connection{{ID: "bad#1", Adapter: bad}})
	table.SetProvider("good", []router.Connection{{ID: "good#1", Adapter: good}})
	table.SetCombo(router.Combo{Name: "both", Strategy: "priority", Targets: []router.Target{{Provider: "bad", Model: "m"}, {Provider: "good", Model: "m"}}})
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	return &pipeline.Engine{Router: router.New(table, clk), Stages: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
}

func scoreOp(model string, tried *[]string) *pipeline.Op {
	return &pipeline.Op{Modality: llm.ModalityRerank, Model: model, InputTokens: 40,
		Units: []llm.Quantity{{Unit: llm.UnitDocument, N: 250}, {Unit: llm.UnitSearchUnit, N: 3}},
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			*tried = append(*tried, t.String())
			s, ok := c.Adapter.(*scorer)
			if !ok {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "rerank"}
			}
			if s.err != nil {
				return pipeline.OpUsage{}, s.err
			}
			return pipeline.OpUsage{Billed: []llm.Quantity{{Unit: llm.UnitSearchUnit, N: 4}}}, nil
		}}
}

// Do passes the gates with the op's modality and units, falls back past
// a failing target, and tells the gates what was used: the request's
// units with the upstream's figures in place, tokens estimated.
func TestDoFallsBackAndReportsUnits(t *testing.T) {
	g := &gate{}
	bad := &scorer{err: &llm.Error{Status: 500, Type: llm.ErrServer, Message: "boom"}}
	e := opEngine(pipeline.Stages{Gates: []pipeline.Gate{g}}, bad, &scorer{})
	var tried []string
	a, err := e.Do(context.Background(), &pipeline.Origin{KeyID: "k", Endpoint: "/v1/rerank"}, scoreOp("both", &tried))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tried, []string{"bad/m", "good/m"}) || a.Model != "good/m" {
		t.Fatalf("tried %v, answered by %s", tried, a.Model)
	}
	want := []llm.Quantity{{Unit: llm.UnitDocument, N: 250}, {Unit: llm.UnitSearchUnit, N: 4}}
	if !slices.Equal(a.Units, want) || a.Usage.InputTokens != 40 || !a.Usage.Estimated {
		t.Fatalf("answer units %v usage %+v", a.Units, a.Usage)
	}
	c := g.calls[0]
	if c.Modality != llm.ModalityRerank || c.Units[0].N != 250 || c.InputTokens != 40 || c.Endpoint != "/v1/rerank" {
		t.Fatalf("call %+v", c)
	}
	o := g.outcomes[0]
	if o.Status != pipeline.StatusOK || !slices.Equal(o.Units, want) || o.Target.Provider != "good" || len(o.Attempts) != 2 {
		t.Fatalf("outcome %+v", o)
	}
}

// A provider type without the capability is skipped without a failure
// against its health; with none that has it, the answer is a 400.
func TestDoSkipsUnsupportedTargets(t *testing.T) {
	g := &gate{}
	e := opEngine(pipeline.Stages{Gates: []pipeline.Gate{g}}, &adapter{}, &scorer{})
	var tried []string
	if _, err := e.Do(context.Background(), &pipeline.Origin{}, scoreOp("both", &tried)); err != nil {
		t.Fatal(err)
	}
	if o := g.outcomes[0]; o.Attempts[0].Status != 400 || o.Attempts[1].Status != 200 {
		t.Fatalf("attempts %+v", o.Attempts)
	}
	_, err := e.Do(context.Background(), &pipeline.Origin{}, scoreOp("bad/m", &tried))
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 400 || le.Message != "provider bad does not serve rerank" {
		t.Fatalf("no capable target: %v", err)
	}
	if o := g.outcomes[1]; o.Status != 400 || o.Units != nil {
		t.Fatalf("failed outcome %+v", o)
	}
}

// A gate's refusal stops the op before any upstream.
func TestDoRefused(t *testing.T) {
	refusal := &llm.Error{Status: 429, Type: llm.ErrRateLimit, Message: "slow down"}
	e := opEngine(pipeline.Stages{Gates: []pipeline.Gate{&gate{refuse: refusal}}}, &scorer{}, &scorer{})
	var tried []string
	if _, err := e.Do(context.Background(), &pipeline.Origin{}, scoreOp("both", &tried)); !errors.Is(err, refusal) || len(tried) != 0 {
		t.Fatalf("refusal %v, tried %v", err, tried)
	}
}
