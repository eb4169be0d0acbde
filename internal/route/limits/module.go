package limits

import "github.com/omniedge/omni/internal/route/feature"

// Module is the gate as a gateway feature: an enforcing gate (after the
// gates that record), /api/usage/budget, the key policy and budget
// tables, and the writer of settled spend, which outlives the gateway's
// context until the requests in flight have settled.
func (g *Gate) Module() feature.Module {
	return feature.Module{
		Name:    "limits",
		Package: "route/limits",
		Admin:   func(a feature.Admin) { g.Register(a.Guarded) },
		Stage:   feature.Stage{Gate: g, Order: feature.Enforce},
		// route_api_keys' policy columns, route_key_budgets, route_key_spend.
		Migrations: feature.Migrations{Route: []string{"20261126010000"}},
		Init:       g.Load,
		Run:        g.Run,
		Lifetime:   feature.Settling,
	}
}
