package client

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Back-off bounds for retried control-plane calls.
const (
	BackoffBase = time.Second
	BackoffMax  = 5 * time.Minute
)

// Backoff returns the wait before retry number attempt (0-based):
// exponential from BackoffBase, capped at BackoffMax, with "equal jitter"
// (a uniformly random point in the upper half), and never shorter than
// the server's Retry-After (plus up to 10% so that clients told the same
// instant do not return together).
func Backoff(attempt int, retryAfter time.Duration, rnd func() float64) time.Duration {
	d := BackoffMax
	if attempt < 20 {
		d = min(BackoffBase<<attempt, BackoffMax)
	}
	d = d/2 + time.Duration(rnd()*float64(d/2))
	if retryAfter > 0 {
		if ra := retryAfter + time.Duration(rnd()*float64(retryAfter/10)); ra > d {
			d = ra
		}
	}
	return d
}

// Jittered returns interval ±10%.
func Jittered(interval time.Duration, rnd func() float64) time.Duration {
	return interval - interval/10 + time.Duration(rnd()*float64(interval/5))
}

// Retryable reports whether a failed API call is worth repeating: rate
// limiting, server errors and transport failures are; other API answers
// (400, 401 after re-login, 403, 404) are not.
func Retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// RetryAfter is the Retry-After of an *APIError, or 0.
func RetryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}
