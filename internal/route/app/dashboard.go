package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/dashboard"
	"github.com/omniedge/omni/internal/route/feature"
)

// dashboardModule builds the web dashboard (route/dashboard), a client of
// the management API: without a store there is no management API and so
// no dashboard.
func dashboardModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	d, err := dashboard.New()
	if err != nil {
		return feature.Module{}, err
	}
	return d.Module(), nil
}
