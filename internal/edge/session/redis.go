package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge"
	"github.com/omniedge/omni/internal/platform/clock"
)

// A session is one string key prefix+"s:"+id that expires with the session:
// "p" while pending, "c"+JSON tokens once completed. Delivery deletes it.
// Completion is announced on the channel prefix+"sc:"+id.
const (
	valPending   = "p"
	tagCompleted = "c"
)

// completeScript turns a pending session into a completed one, keeping its
// expiry, and announces it.
//
//	KEYS[1]  session key
//	ARGV[1]  tokens (JSON)
//	ARGV[2]  completion channel
//
// It returns 1 on success, 0 when the session is unknown or expired (or
// already delivered) and 2 when it was already completed. The channel is
// passed as an argument, not a key: PUBLISH is not bound to a key slot.
var completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
if v ~= 'p' then
  return 2
end
redis.call('SET', KEYS[1], 'c' .. ARGV[1], 'KEEPTTL')
redis.call('PUBLISH', ARGV[2], '1')
return 1
`)

// takeScript delivers a completed session exactly once by deleting it.
//
//	KEYS[1]  session key
//
// It returns {0, 0} when the session is unknown, expired or delivered,
// {1, pttl} while it is pending (pttl: ms left, -1 if it has no expiry)
// and {2, tokens JSON} when this call took the tokens.
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return {0, 0}
end
if v == 'p' then
  return {1, redis.call('PTTL', KEYS[1])}
end
redis.call('DEL', KEYS[1])
return {2, string.sub(v, 2)}
`)

// pollEvery bounds how long Wait trusts Pub/Sub alone: if a completion
// message is lost (e.g. while the subscription reconnects), the next poll
// still finds the tokens.
const pollEvery = 5 * time.Second

// subscribeTimeout bounds the wait for Redis to confirm a subscription.
const subscribeTimeout = 5 * time.Second

// Redis keeps sessions in Redis so that the browser completing a login and
// the client waiting for it may reach different replicas. Create is one
// SET NX PX, Pending one GET, Complete one EVALSHA (which also PUBLISHes)
// and Wait one EVALSHA when the tokens are already there; otherwise Wait
// holds a Pub/Sub subscription (one connection) until the session is
// completed, expires or ctx ends. Requires Redis >= 6 (SET KEEPTTL).
//
// The clock only converts Create's expiry into a time-to-live; from then on
// the key expires in Redis's real time.
type Redis struct {
	c      *redis.Client
	prefix string
	clk    clock.Clock
}

var _ edge.SessionStore = (*Redis)(nil)

// NewRedis returns a store keeping sessions under prefix in c.
func NewRedis(c *redis.Client, prefix string, clk clock.Clock) *Redis {
	return &Redis{c: c, prefix: prefix, clk: clk}
}

func (s *Redis) key(id string) string     { return s.prefix + "s:" + id }
func (s *Redis) channel(id string) string { return s.prefix + "sc:" + id }

// wireTokens is the stored form of edge.TokenPair, whose JSON encoding
// omits ExpiresIn.
type wireTokens struct {
	Token        string `json:"t"`
	RefreshToken string `json:"r"`
	ExpiresIn    int64  `json:"e"` // nanoseconds
}

// Create records a pending session that expires at expires (ErrConflict if
// the id is live). A session created already expired is not stored.
func (s *Redis) Create(ctx context.Context, id string, expires time.Time) error {
	ttl := expires.Sub(s.clk.Now())
	if ttl <= 0 {
		n, err := s.c.Exists(ctx, s.key(id)).Result()
		if err != nil {
			return fmt.Errorf("session: redis create: %w", err)
		}
		if n > 0 {
			return edge.ErrConflict
		}
		return nil
	}
	ok, err := s.c.SetNX(ctx, s.key(id), valPending, ttl).Result()
	if err != nil {
		return fmt.Errorf("session: redis create: %w", err)
	}
	if !ok {
		return edge.ErrConflict
	}
	return nil
}

// Pending reports whether the session exists, has not expired and has not
// been completed yet.
func (s *Redis) Pending(ctx context.Context, id string) (bool, error) {
	v, err := s.c.Get(ctx, s.key(id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: redis pending: %w", err)
	}
	return v == valPending, nil
}

// Complete stores the tokens of a pending session and wakes its waiters on
// every replica.
func (s *Redis) Complete(ctx context.Context, id string, t edge.TokenPair) error {
	b, err := json.Marshal(wireTokens{Token: t.Token, RefreshToken: t.RefreshToken, ExpiresIn: int64(t.ExpiresIn)})
	if err != nil {
		return fmt.Errorf("session: redis complete: %w", err)
	}
	res, err := completeScript.Run(ctx, s.c, []string{s.key(id)}, b, s.channel(id)).Int64()
	if err != nil {
		return fmt.Errorf("session: redis complete: %w", err)
	}
	switch res {
	case 1:
		return nil
	case 0:
		return edge.ErrNotFound
	case 2:
		return edge.ErrConflict
	default:
		return fmt.Errorf("session: redis complete: unexpected reply %d", res)
	}
}

// Wait returns the session's tokens once it is completed, exactly once
// across all waiters and replicas: the take is a single atomic script that
// deletes the session. It subscribes to the completion channel before
// checking again, so a completion between the two is never missed.
func (s *Redis) Wait(ctx context.Context, id string) (edge.TokenPair, error) {
	if err := ctx.Err(); err != nil {
		return edge.TokenPair{}, err
	}
	// Tokens already there (taken now), or the session is unknown, expired
	// or delivered: no subscription needed.
	if t, _, done, err := s.take(ctx, id); done || err != nil {
		return t, err
	}

	sub := s.c.Subscribe(ctx, s.channel(id))
	defer sub.Close()
	// Receive the confirmation: only then is a PUBLISH sure to reach us.
	msg, err := sub.ReceiveTimeout(ctx, subscribeTimeout)
	if err != nil {
		return edge.TokenPair{}, s.fail(ctx, "wait: subscribe", err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return edge.TokenPair{}, fmt.Errorf("session: redis wait: subscribe: unexpected reply %v", msg)
	}
	// Subscription messages arrive on re-subscribe after a reconnect, when
	// a completion may have been missed: they trigger a take too.
	msgs := sub.ChannelWithSubscriptions()

	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	for {
		t, ttl, done, err := s.take(ctx, id)
		if done || err != nil {
			return t, err
		}
		wait := pollEvery
		if ttl >= 0 {
			// One extra millisecond: PTTL is truncated, and the next take
			// must see the key gone.
			wait = min(wait, ttl+time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return edge.TokenPair{}, ctx.Err()
		case _, ok := <-msgs:
			if !ok {
				return edge.TokenPair{}, errors.New("session: redis wait: subscription closed")
			}
		case <-timer.C:
		}
	}
}

// take tries to deliver the session. done reports that Wait is over (with
// the tokens or ErrNotFound); otherwise the session is pending with ttl
// left (negative: no expiry).
//
// The script runs detached from ctx's cancellation: were the reply
// abandoned after Redis deleted the session, its tokens would be lost to
// every waiter. The client's own timeouts still bound the call.
func (s *Redis) take(ctx context.Context, id string) (t edge.TokenPair, ttl time.Duration, done bool, err error) {
	res, err := takeScript.Run(context.WithoutCancel(ctx), s.c, []string{s.key(id)}).Slice()
	if err != nil {
		return edge.TokenPair{}, 0, true, s.fail(ctx, "wait", err)
	}
	if len(res) != 2 {
		return edge.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
	}
	status, _ := res[0].(int64)
	switch status {
	case 0:
		return edge.TokenPair{}, 0, true, edge.ErrNotFound
	case 1:
		ms, ok := res[1].(int64)
		if !ok {
			return edge.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
		}
		return edge.TokenPair{}, time.Duration(ms) * time.Millisecond, false, nil
	case 2:
		raw, _ := res[1].(string)
		var w wireTokens
		if err := json.Unmarshal([]byte(raw), &w); err != nil {
			return edge.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: decode tokens: %w", err)
		}
		return edge.TokenPair{Token: w.Token, RefreshToken: w.RefreshToken, ExpiresIn: time.Duration(w.ExpiresIn)}, 0, true, nil
	default:
		return edge.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
	}
}

// fail reports err, or ctx's error when ctx ended (the Redis error is then
// only a consequence).
func (s *Redis) fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("session: redis %s: %w", op, err)
}
