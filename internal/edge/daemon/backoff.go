package daemon

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/omniedge/omni/internal/edge/client"
)

// Back-off bounds for retried control-plane calls.
const (
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
	// startAttempts bounds the retries of one start-up call (login,
	// register, join): with the cap above, about an hour of trying.
	startAttempts = 20
)

// backoff returns the wait before retry number attempt (0-based):
// exponential from backoffBase, capped at backoffMax, with "equal jitter"
// (a uniformly random point in the upper half), and never shorter than
// the server's Retry-After (plus up to 10% so that clients told the same
// instant do not return together).
func backoff(attempt int, retryAfter time.Duration, rnd func() float64) time.Duration {
	d := backoffMax
	if attempt < 20 {
		d = min(backoffBase<<attempt, backoffMax)
	}
	d = d/2 + time.Duration(rnd()*float64(d/2))
	if retryAfter > 0 {
		if ra := retryAfter + time.Duration(rnd()*float64(retryAfter/10)); ra > d {
			d = ra
		}
	}
	return d
}

// jittered returns interval ±10%.
func jittered(interval time.Duration, rnd func() float64) time.Duration {
	return interval - interval/10 + time.Duration(rnd()*float64(interval/5))
}

// retryable reports whether a failed API call is worth repeating: rate
// limiting, server errors and transport failures are; other API answers
// (400, 401 after re-login, 403, 404) are not.
func retryable(err error) bool {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func retryAfter(err error) time.Duration {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}
