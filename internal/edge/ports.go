package edge

import (
	"context"
	"time"
)

// PresenceStore keeps the last heartbeat of every device where all
// replicas can read it: in memory for one process, in Redis for several.
type PresenceStore interface {
	Touch(ctx context.Context, p Presence) error
	// Lookup returns the known presence of each id; missing ids are absent.
	Lookup(ctx context.Context, ids []string) (map[string]Presence, error)
}

// SessionStore keeps browser login sessions until their tokens are
// delivered once or they expire.
type SessionStore interface {
	// Create records a pending session.
	Create(ctx context.Context, id string, expires time.Time) error
	// Pending reports whether the session exists, has not expired and has
	// not been approved yet.
	Pending(ctx context.Context, id string) (bool, error)
	// Complete stores the tokens of an approved session: ErrNotFound when
	// unknown or expired, ErrConflict when already approved.
	Complete(ctx context.Context, id string, tokens TokenPair) error
	// Wait blocks until the session is approved and returns its tokens,
	// exactly once across all waiters and replicas (later waiters and
	// unknown or expired sessions get ErrNotFound), or until ctx ends.
	Wait(ctx context.Context, id string) (TokenPair, error)
}
