package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/redisx"
)

// revokeScript records a revoked login session in the sorted set KEYS[1]
// (score: until, Unix ms), drops entries past at ARGV[3], keeps the set
// alive until its last entry is past and announces the revocation.
//
//	ARGV[1] family, ARGV[2] until ms, ARGV[3] now ms, ARGV[4] channel
var revokeScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local ttl = tonumber(ARGV[2]) - tonumber(ARGV[3])
if ttl > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[2])
return 1
`)

// resyncEvery is how often a replica reloads the whole set, as a safety net
// behind Pub/Sub.
const resyncEvery = 30 * time.Second

// RedisRevocations is the control.RevocationSet shared by replicas: revoked
// login sessions live in one Redis sorted set (entries expire after the
// access-token lifetime) and are announced on a channel; every replica
// keeps a local copy, loaded at start, updated from the channel and
// reloaded on every (re)subscription and every resyncEvery. Revoked reads
// only the local copy.
type RedisRevocations struct {
	c       *redis.Client
	key     string
	channel string
	clk     clock.Clock
	local   *control.LocalRevocations
}

var _ control.RevocationSet = (*RedisRevocations)(nil)

// NewRedisRevocations returns the set kept under prefix in c. Call Load
// before serving and Run for the replica's lifetime.
func NewRedisRevocations(c *redis.Client, prefix string, clk clock.Clock) *RedisRevocations {
	return &RedisRevocations{c: c, key: prefix + "rv", channel: prefix + "rvc", clk: clk, local: control.NewLocalRevocations()}
}

// Revoke records family in Redis, announces it and adds it locally.
func (r *RedisRevocations) Revoke(ctx context.Context, family string, until time.Time) error {
	now := r.clk.Now()
	if err := revokeScript.Run(ctx, r.c, []string{r.key}, family, until.UnixMilli(), now.UnixMilli(), r.channel).Err(); err != nil {
		return fmt.Errorf("session: redis revoke: %w", err)
	}
	r.local.Add(family, until, now)
	return nil
}

// Revoked reads the local copy.
func (r *RedisRevocations) Revoked(family string, now time.Time) bool {
	return r.local.Revoked(family, now)
}

// Load replaces nothing and adds every live entry of the shared set to the
// local copy.
func (r *RedisRevocations) Load(ctx context.Context) error {
	now := r.clk.Now()
	zs, err := r.c.ZRangeByScoreWithScores(ctx, r.key, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("session: redis revocations load: %w", err)
	}
	for _, z := range zs {
		if f, ok := z.Member.(string); ok {
			r.local.Add(f, time.UnixMilli(int64(z.Score)), now)
		}
	}
	r.local.Sweep(now)
	return nil
}

// Run follows the channel until ctx ends, reloading the set on every
// (re)subscription and every resyncEvery.
func (r *RedisRevocations) Run(ctx context.Context) error {
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		tick := time.NewTicker(resyncEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = r.Load(ctx) // a failure is retried at the next tick or subscription
			}
		}
	}()
	return redisx.Follow(ctx, r.c, r.channel, redisx.Follower{
		OnSubscribed: func(ctx context.Context) { _ = r.Load(ctx) },
		OnMessage: func(payload string) {
			f, ms, ok := strings.Cut(payload, " ")
			if v, err := strconv.ParseInt(ms, 10, 64); ok && err == nil {
				r.local.Add(f, time.UnixMilli(v), r.clk.Now())
			}
		},
	})
}

// subscribers returns how many replicas follow the channel (for tests: a
// revocation announced after a replica subscribed reaches it).
func (r *RedisRevocations) subscribers(ctx context.Context) (int64, error) {
	n, err := r.c.PubSubNumSub(ctx, r.channel).Result()
	return n[r.channel], err
}
