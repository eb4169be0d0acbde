package conversations

import (
	"context"
	"log/slog"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// Module is the store of Responses conversations as a gateway feature:
// rs (Redis, the route store's table, or the pipeline's memory store)
// behind previous_response_id, the conversations table, and, for the
// table store, the sweep of expired rows.
func Module(rs pipeline.ResponseStore, log *slog.Logger) feature.Module {
	m := feature.Module{
		Name:       "conversations",
		Package:    "route/conversations",
		Stage:      feature.Stage{Responses: rs},
		Migrations: feature.Migrations{Route: []string{"20261205041700"}}, // route_responses
		Settings: feature.Settings{Config: []string{"route.responses_ttl", "route.responses_max_bytes", "route.responses_max_per_key",
			"route.responses_max_key_bytes", "route.responses_max", "route.responses_max_total_bytes", "redis", "redis_prefix"}},
	}
	if s, ok := rs.(*SQL); ok {
		m.Run = func(ctx context.Context) error { s.Run(ctx, log); return nil }
	}
	return m
}
