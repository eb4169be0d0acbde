// Package ratelimit owns request rate limiting: a Limiter decides whether
// one more request under a key may proceed now, and if not, how long the
// caller should wait. Two implementations share the same semantics: Memory
// (per process, sharded, for hot paths) and Redis (shared between replicas).
//
// Both implement GCRA, the generic cell rate algorithm, which behaves exactly
// like a token bucket of capacity Burst refilled at Rate tokens per second
// but stores a single number per key: the theoretical arrival time (TAT),
// the instant at which the bucket would be full again. From an idle state
// exactly Burst requests pass at once; after that one passes every 1/Rate.
// A key whose TAT lies in the past is idle and carries no state, so both
// implementations forget it (Memory by lazy sweeping, Redis by key expiry).
package ratelimit

import (
	"context"
	"math"
	"time"
)

// Limit is a rate with a burst allowance.
type Limit struct {
	// Rate is the sustained number of events per second. Rate <= 0 means
	// unlimited.
	Rate float64
	// Burst is how many events may pass at once from an idle state. Burst
	// < 1 is treated as max(1, ceil(Rate)).
	Burst int
}

// Decision is a Limiter's answer for one request.
type Decision struct {
	// Allowed reports whether the request may proceed; an allowed request
	// has consumed one token.
	Allowed bool
	// RetryAfter is, when the request was refused, the time until one token
	// is available (always > 0). It is zero when Allowed.
	RetryAfter time.Duration
	// Remaining is the number of requests that could pass immediately
	// after this one. It is 0 when refused, and math.MaxInt when the
	// limit is unlimited (callers should then omit rate-limit headers).
	Remaining int
}

// Limiter decides whether a request under key may proceed under l.
// Different keys are independent. Calls for the same key with different
// limits are allowed but share one state (the TAT).
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Decision, error)
}

// unlimited is the Decision for a Limit with Rate <= 0.
var unlimited = Decision{Allowed: true, Remaining: math.MaxInt}

// burst returns the effective burst of l (l.Rate > 0).
func (l Limit) burst() int64 {
	if l.Burst >= 1 {
		return int64(l.Burst)
	}
	c := math.Ceil(l.Rate)
	switch {
	case c <= 1:
		return 1
	case c >= math.MaxInt32:
		return math.MaxInt32
	default:
		return int64(c)
	}
}

// cells converts l into GCRA parameters in units of unit: the emission
// interval t (time per token, at least one unit) and the burst window
// (Burst*t, the furthest the TAT may run ahead of now). t is clamped to
// maxT and window to maxWindow so that now+window+t cannot overflow the
// implementation's number range. ok is false when l is unlimited.
func (l Limit) cells(unit time.Duration, maxT, maxWindow int64) (t, window int64, ok bool) {
	if !(l.Rate > 0) || math.IsInf(l.Rate, 1) { // also catches NaN
		return 0, 0, false
	}
	tf := math.Round(float64(time.Second/unit) / l.Rate)
	switch {
	case tf < 1:
		t = 1
	case tf >= float64(maxT):
		t = maxT
	default:
		t = int64(tf)
	}
	b := l.burst()
	if b > maxWindow/t {
		window = maxWindow
	} else {
		window = b * t
	}
	return t, window, true
}

// remaining is the number of tokens left once the TAT is diff ahead of now.
func remaining(window, diff, t int64) int {
	return int((window - diff) / t)
}
