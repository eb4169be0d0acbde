package usage

import (
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/store"
)

// Module is the recorder as a gateway feature: the first gate (it
// records the refusals of every later one), the usage, telemetry, health
// and session routes, the usage table, and the batched writer, which
// outlives the gateway's context until the requests in flight have
// settled.
func (r *Recorder) Module() feature.Module {
	return feature.Module{
		Name:    "usage",
		Package: "route/usage",
		// /api/usage/{history,groups,logs,request-logs,tail,{connectionId}}, /api/telemetry/summary,
		// /api/monitoring/health, /api/sessions, /api/settings/usage-retention
		Admin:      func(a feature.Admin) { r.Register(a.Guarded) },
		Stage:      feature.Stage{Gate: r, Order: feature.Record},
		Migrations: feature.Migrations{Route: []string{"20261126030000", "20261214010000", "20261215010000", "20261215030000", "20261216010000"}}, // route_usage (and its modality, unit, quantity), route_usage_hourly, their breakdown, model and modality filter
		Settings:   feature.Settings{Stored: []string{store.SettingUsageRetentionDays}},
		Run:        r.Run,
		Lifetime:   feature.Settling,
	}
}
