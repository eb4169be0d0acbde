package session

import (
	"context"
	"time"

	"github.com/omniedge/omni/internal/edge"
)

func createSession(ctx context.Context, s edge.SessionStore, id string, exp time.Time) error {
	return s.Create(ctx, id, edge.LoginRequest{ClientIP: "192.0.2.1", Expires: exp})
}
