package app

import (
	"context"
	"errors"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/policies"
)

// policiesModule builds the routing policies (route/policies): a gate
// judging every routed call against the stored policies, which also
// hides from the model lists what policies for every key forbid. Without
// a store there are no policies: no module.
func policiesModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	if w.state == nil {
		return feature.Module{}, errors.New("route: the policies module comes after the routing state")
	}
	state := w.state
	s, err := policies.New(policies.Options{
		Store:    policies.NewStore(w.d.DB),
		Resolver: w.app.Table,
		Known:    func(id string) bool { _, ok := state.Snapshot().ByID[id]; return ok },
		Clock:    w.d.Clock,
		Log:      w.d.Log,
	})
	if err != nil {
		return feature.Module{}, err
	}
	w.app.listed = s.Listed
	return s.Module(), nil
}
