package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
)

// Redis times are Unix microseconds, which Lua's doubles hold exactly (they
// are exact up to 2^53 ≈ 9e15; now is ≈ 1.8e15). The clamps keep
// now+window+t below 2^53.
const (
	redisMaxT      = int64(1) << 50 // ~35 years
	redisMaxWindow = int64(1) << 51 // ~71 years
)

// gcraScript applies GCRA atomically to one key.
//
//	KEYS[1]  the key holding the TAT (Unix µs, as a decimal integer)
//	ARGV[1]  now (Unix µs)
//	ARGV[2]  emission interval t (µs per token, >= 1)
//	ARGV[3]  burst window (Burst*t µs)
//
// It returns {allowed (0|1), retry-after µs, remaining}. On success the key
// is rewritten with a PX expiry at the new TAT, the instant it becomes idle.
// Numbers are formatted with %.0f because Redis would otherwise render large
// Lua numbers in exponent or 14-digit form, losing precision.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local newtat = tat + t
local diff = newtat - now
if diff > window then
  return {0, diff - window, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', newtat),
  'PX', string.format('%.0f', math.ceil(diff / 1000)))
return {1, 0, math.floor((window - diff) / t)}
`)

// Redis is a Limiter whose state lives in Redis, so every replica sharing
// the server and prefix enforces one limit together. Each Allow is one
// EVALSHA of a Lua script (one round trip, atomic on the key prefix+key);
// idle keys expire by themselves.
//
// The current time comes from the Go side clock, passed to the script in
// microseconds (so tests can use a fake clock), which assumes the replicas'
// clocks are synchronised (NTP): skew between replicas shifts their view of
// the shared TAT by the skew. Time resolution is one microsecond, so rates
// above 10^6 per second per key are capped at 10^6.
type Redis struct {
	c      *redis.Client
	prefix string
	clk    clock.Clock
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter storing its state under prefix+key in c and
// reading time from clk.
func NewRedis(c *redis.Client, prefix string, clk clock.Clock) *Redis {
	return &Redis{c: c, prefix: prefix, clk: clk}
}

// Allow reports whether one more request under key may proceed under l and
// records it if so. It fails only when Redis does (or ctx ends); the caller
// decides whether to fail open or closed.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Decision, error) {
	t, window, ok := l.cells(time.Microsecond, redisMaxT, redisMaxWindow)
	if !ok {
		return unlimited, nil
	}
	now := r.clk.Now().UnixMicro()
	res, err := gcraScript.Run(ctx, r.c, []string{r.prefix + key}, now, t, window).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis allow %q: %w", key, err)
	}
	if len(res) != 3 {
		return Decision{}, fmt.Errorf("ratelimit: redis allow %q: unexpected reply %v", key, res)
	}
	if res[0] == 1 {
		return Decision{Allowed: true, Remaining: int(res[2])}, nil
	}
	return Decision{RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}
