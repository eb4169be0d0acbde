package control

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

// LoginRequest is what a browser login session records about the client
// that started it, for the approval page and the login session it creates.
type LoginRequest struct {
	ClientIP  string
	UserAgent string
	Code      string // short code the device prints and the page shows
	Expires   time.Time
}

// SessionStore keeps browser login sessions until their tokens are
// delivered once or they expire. Implementations cap the live sessions per
// client IP and in all.
type SessionStore interface {
	// Create records a pending session: ErrConflict when the id is live,
	// ErrLimit when its client IP or the store holds as many live
	// sessions as allowed.
	Create(ctx context.Context, id string, req LoginRequest) error
	// Pending returns the request of a session that exists, has not
	// expired and has not been approved yet (ok false otherwise).
	Pending(ctx context.Context, id string) (req LoginRequest, ok bool, err error)
	// Complete stores the tokens of an approved session: ErrNotFound when
	// unknown or expired, ErrConflict when already approved.
	Complete(ctx context.Context, id string, tokens TokenPair) error
	// Wait blocks until the session is approved and returns its tokens,
	// exactly once (unknown, expired or delivered sessions get
	// ErrNotFound), or until ctx ends. One waiter at a time across all
	// replicas: while one waits, another gets ErrConflict.
	Wait(ctx context.Context, id string) (TokenPair, error)
}

// RevocationSet holds the login sessions (refresh families) revoked within
// the last access-token lifetime, so their access tokens stop working at
// once. Revoked is on every authenticated request's path and must be an
// in-memory lookup; implementations shared by replicas keep a local copy
// current.
type RevocationSet interface {
	// Revoke adds family until the given time (the expiry of the last
	// access token it may have issued).
	Revoke(ctx context.Context, family string, until time.Time) error
	// Revoked reports whether family is revoked at now.
	Revoked(family string, now time.Time) bool
}
