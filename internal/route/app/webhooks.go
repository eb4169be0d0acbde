package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/webhooks"
)

// webhooksModule builds the outbound webhooks (route/webhooks): the
// events.Publisher the modules after it emit to (w.events), the
// subscriptions and the delivery queue in the database. Without a store:
// no module, and the emitters get events.Discard.
func webhooksModule(_ context.Context, w *wiring) (feature.Module, error) {
	if w.st == nil {
		return feature.Module{}, nil
	}
	s, err := webhooks.New(webhooks.Options{DB: w.d.DB, MasterKey: w.d.MasterKey, Clock: w.d.Clock, Log: w.d.Log, Metrics: w.d.Metrics})
	if err != nil {
		return feature.Module{}, err
	}
	w.events = s
	w.app.Webhooks = s
	return s.Module(), nil
}

// publisher is what the emitting modules publish events to.
func (w *wiring) publisher() events.Publisher { return events.Or(w.events) }
