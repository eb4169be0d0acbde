package session

import (
	"context"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
)

func createSession(ctx context.Context, s control.SessionStore, id string, exp time.Time) error {
	return s.Create(ctx, id, control.LoginRequest{ClientIP: "192.0.2.1", Expires: exp})
}
