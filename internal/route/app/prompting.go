package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/prompting"
)

// promptingModule builds the global system prompt and thinking budget,
// stored in the route store's settings: not served without a store.
func promptingModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	return prompting.New(prompting.Options{Store: w.st, Log: w.d.Log}).Module(), nil
}
