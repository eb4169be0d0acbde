package api

import (
	"context"

	"github.com/omniedge/omni/internal/route/feature"
)

var _ feature.ModelPolicy = (*Server)(nil)

// PermitsModel implements feature.ModelPolicy: the key policies of the
// engine's gates, asked for the key of the request of ctx.
func (s *Server) PermitsModel(ctx context.Context, model string) error { return s.permits(ctx, model) }
