package routing

import "github.com/omniedge/omni/internal/route/feature"

// Module is the routing state as a gateway feature: it loads the routing
// table from the configuration and the store before the gateway serves,
// and its Run, which the gateway waits for when it stops, follows other
// replicas' changes and records gateway key use. It serves no routes (the
// management API over it is route/admin's packages). It owns the route
// store migrations that span several resources: the initial schema (the
// providers, credentials, keys, aliases, combos, mappings, models and
// pricing tables, settings, dashboard sessions and the epoch) and the
// one adding output limits to prices and scopes and issuers to keys.
func (st *State) Module() feature.Module {
	return feature.Module{
		Name:       "routing",
		Package:    "route/routing",
		Migrations: feature.Migrations{Route: []string{"20261125000000", "20261204010000"}},
		Settings:   feature.Settings{Config: []string{"route.providers", "route.aliases", "route.combos"}},
		Init:       st.Load,
		Run:        st.Run,
		Lifetime:   feature.Awaited,
	}
}
