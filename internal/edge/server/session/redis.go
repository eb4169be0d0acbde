package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
)

// A session is one string key prefix+"s:"+id that expires with the session:
// "p" IP "\n" request JSON while pending, "c" IP "\n" tokens JSON once
// completed. Delivery deletes it. Live sessions are also members of the
// sorted sets prefix+"si:"+source (the IP, or an IPv6 address's /64:
// ipam.Source) and prefix+"sa" (score: expiry in Redis's
// milliseconds) that enforce the caps. Completion is announced on the one
// channel prefix+"sc" with the session id as the message; every waiter of a
// replica shares that one subscription. The waiter of a session holds
// prefix+"sw:"+id.
const (
	tagPending   = "p"
	tagCompleted = "c"
)

// createScript records a pending session unless the id is live or a cap is
// reached.
//
//	KEYS[1] session key, KEYS[2] per-IP set, KEYS[3] global set
//	ARGV[1] value, ARGV[2] ttl ms, ARGV[3] per-IP cap, ARGV[4] total cap, ARGV[5] id
//
// It returns 1 on success (or nothing stored for a ttl <= 0), 0 when the id
// is live and 2 when a cap is reached. Expiry scores use Redis's clock, the
// one that expires the keys.
var createScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ttl <= 0 then
  return 1
end
local perIP, total = tonumber(ARGV[3]), tonumber(ARGV[4])
if perIP > 0 and redis.call('ZCARD', KEYS[2]) >= perIP then
  return 2
end
if total > 0 and redis.call('ZCARD', KEYS[3]) >= total then
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[5])
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
return 1
`)

// completeScript turns a pending session into a completed one, keeping its
// expiry, and announces it.
//
//	KEYS[1]  session key
//	ARGV[1]  tokens (JSON)
//	ARGV[2]  completion channel
//	ARGV[3]  session id (the message)
//
// It returns 1 on success, 0 when the session is unknown or expired (or
// already delivered) and 2 when it was already completed. The channel is
// passed as an argument, not a key: PUBLISH is not bound to a key slot.
var completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
if string.sub(v, 1, 1) ~= 'p' then
  return 2
end
local nl = string.find(v, '\n', 1, true)
redis.call('SET', KEYS[1], 'c' .. string.sub(v, 2, nl) .. ARGV[1], 'KEEPTTL')
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// takeScript delivers a completed session exactly once by deleting it.
//
//	KEYS[1]  session key
//
// It returns {0, 0} when the session is unknown, expired or delivered,
// {1, pttl} while it is pending (pttl: ms left, -1 if it has no expiry)
// and {2, "IP\ntokens JSON"} when this call took the tokens.
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return {0, 0}
end
if string.sub(v, 1, 1) == 'p' then
  return {1, redis.call('PTTL', KEYS[1])}
end
redis.call('DEL', KEYS[1])
return {2, string.sub(v, 2)}
`)

// lockRefreshScript extends, and lockReleaseScript deletes, the waiter
// lock KEYS[1] if it still holds ARGV[1].
var (
	lockRefreshScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)
	lockReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
)

// pollEvery bounds how long Wait trusts Pub/Sub alone: if a completion
// message is lost (e.g. while the subscription reconnects), the next poll
// still finds the tokens. The waiter lock lives three polls, so a replica
// that dies mid-wait frees the session soon.
const (
	pollEvery = 5 * time.Second
	lockTTL   = 3 * pollEvery
)

// subscribeTimeout bounds the wait for Redis to confirm a subscription.
const subscribeTimeout = 5 * time.Second

// Redis keeps sessions in Redis so that the browser completing a login and
// the client waiting for it may reach different replicas. Create and
// Complete are one EVALSHA each, Pending one GET; Wait takes the tokens
// with one EVALSHA when they are already there, otherwise it holds the
// session's waiter lock and waits on the replica's one shared
// subscription (no connection of its own) until the session is completed,
// expires or ctx ends. Requires Redis >= 6 (SET KEEPTTL).
//
// The clock only converts Create's expiry into a time-to-live; from then on
// the key expires in Redis's real time.
type Redis struct {
	c      *redis.Client
	prefix string
	clk    clock.Clock
	lim    Limits
	hub    *hub
}

var _ control.SessionStore = (*Redis)(nil)

// NewRedis returns a store keeping sessions under prefix in c, with
// DefaultLimits.
func NewRedis(c *redis.Client, prefix string, clk clock.Clock) *Redis {
	return NewRedisLimited(c, prefix, clk, DefaultLimits)
}

// NewRedisLimited returns a store with the given caps.
func NewRedisLimited(c *redis.Client, prefix string, clk clock.Clock, lim Limits) *Redis {
	return &Redis{c: c, prefix: prefix, clk: clk, lim: lim, hub: newHub(c, prefix+"sc")}
}

func (s *Redis) key(id string) string     { return s.prefix + "s:" + id }
func (s *Redis) lockKey(id string) string { return s.prefix + "sw:" + id }
func (s *Redis) ipKey(ip string) string   { return s.prefix + "si:" + ipam.SourceString(ip) }
func (s *Redis) allKey() string           { return s.prefix + "sa" }

// wireTokens is the stored form of control.TokenPair, whose JSON encoding
// omits ExpiresIn.
type wireTokens struct {
	Token        string `json:"t"`
	RefreshToken string `json:"r"`
	ExpiresIn    int64  `json:"e"` // nanoseconds
}

// wireRequest is the stored form of a pending session's request.
type wireRequest struct {
	UserAgent string `json:"ua,omitempty"`
	Code      string `json:"code,omitempty"`
	Expires   int64  `json:"exp"` // Unix ms
}

// Create records a pending session that expires at req.Expires
// (ErrConflict if the id is live, ErrLimit at a cap). A session created
// already expired is not stored.
func (s *Redis) Create(ctx context.Context, id string, req control.LoginRequest) error {
	ip := strings.ReplaceAll(req.ClientIP, "\n", "")
	b, err := json.Marshal(wireRequest{UserAgent: req.UserAgent, Code: req.Code, Expires: req.Expires.UnixMilli()})
	if err != nil {
		return fmt.Errorf("session: redis create: %w", err)
	}
	ttl := req.Expires.Sub(s.clk.Now()).Milliseconds()
	res, err := createScript.Run(ctx, s.c, []string{s.key(id), s.ipKey(ip), s.allKey()},
		tagPending+ip+"\n"+string(b), ttl, s.lim.PerIP, s.lim.Total, id).Int64()
	if err != nil {
		return fmt.Errorf("session: redis create: %w", err)
	}
	switch res {
	case 1:
		return nil
	case 0:
		return control.ErrConflict
	case 2:
		return control.ErrLimit
	default:
		return fmt.Errorf("session: redis create: unexpected reply %d", res)
	}
}

// Pending returns the request of a session that exists, has not expired
// and has not been completed yet.
func (s *Redis) Pending(ctx context.Context, id string) (control.LoginRequest, bool, error) {
	v, err := s.c.Get(ctx, s.key(id)).Result()
	if errors.Is(err, redis.Nil) {
		return control.LoginRequest{}, false, nil
	}
	if err != nil {
		return control.LoginRequest{}, false, fmt.Errorf("session: redis pending: %w", err)
	}
	rest, ok := strings.CutPrefix(v, tagPending)
	if !ok {
		return control.LoginRequest{}, false, nil
	}
	ip, body, _ := strings.Cut(rest, "\n")
	var w wireRequest
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		return control.LoginRequest{}, false, fmt.Errorf("session: redis pending: decode: %w", err)
	}
	return control.LoginRequest{ClientIP: ip, UserAgent: w.UserAgent, Code: w.Code, Expires: time.UnixMilli(w.Expires)}, true, nil
}

// Complete stores the tokens of a pending session and wakes its waiter on
// whichever replica it is.
func (s *Redis) Complete(ctx context.Context, id string, t control.TokenPair) error {
	b, err := json.Marshal(wireTokens{Token: t.Token, RefreshToken: t.RefreshToken, ExpiresIn: int64(t.ExpiresIn)})
	if err != nil {
		return fmt.Errorf("session: redis complete: %w", err)
	}
	res, err := completeScript.Run(ctx, s.c, []string{s.key(id)}, b, s.hub.channel, id).Int64()
	if err != nil {
		return fmt.Errorf("session: redis complete: %w", err)
	}
	switch res {
	case 1:
		return nil
	case 0:
		return control.ErrNotFound
	case 2:
		return control.ErrConflict
	default:
		return fmt.Errorf("session: redis complete: unexpected reply %d", res)
	}
}

// Wait returns the session's tokens once it is completed, exactly once
// across all waiters and replicas: the take is a single atomic script that
// deletes the session. Only the holder of the session's waiter lock waits;
// another gets ErrConflict. It joins the shared subscription before
// checking again, so a completion between the two is never missed.
func (s *Redis) Wait(ctx context.Context, id string) (control.TokenPair, error) {
	if err := ctx.Err(); err != nil {
		return control.TokenPair{}, err
	}
	// Tokens already there (taken now), or the session is unknown, expired
	// or delivered: no waiting needed.
	if t, _, done, err := s.take(ctx, id); done || err != nil {
		return t, err
	}
	lock, holder := s.lockKey(id), auth.RandomToken("", 12)
	ok, err := s.c.SetNX(ctx, lock, holder, lockTTL).Result()
	if err != nil {
		return control.TokenPair{}, s.fail(ctx, "wait: lock", err)
	}
	if !ok {
		return control.TokenPair{}, control.ErrConflict
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), subscribeTimeout)
		_ = lockReleaseScript.Run(rctx, s.c, []string{lock}, holder).Err()
		cancel()
	}()

	wake, leave, err := s.hub.join(ctx, id)
	if err != nil {
		return control.TokenPair{}, s.fail(ctx, "wait: subscribe", err)
	}
	defer leave()

	timer := time.NewTimer(pollEvery)
	defer timer.Stop()
	for {
		t, ttl, done, err := s.take(ctx, id)
		if done || err != nil {
			return t, err
		}
		if err := lockRefreshScript.Run(ctx, s.c, []string{lock}, holder, lockTTL.Milliseconds()).Err(); err != nil {
			return control.TokenPair{}, s.fail(ctx, "wait: lock", err)
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
			return control.TokenPair{}, ctx.Err()
		case <-wake:
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
func (s *Redis) take(ctx context.Context, id string) (t control.TokenPair, ttl time.Duration, done bool, err error) {
	res, err := takeScript.Run(context.WithoutCancel(ctx), s.c, []string{s.key(id)}).Slice()
	if err != nil {
		return control.TokenPair{}, 0, true, s.fail(ctx, "wait", err)
	}
	if len(res) != 2 {
		return control.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
	}
	status, _ := res[0].(int64)
	switch status {
	case 0:
		return control.TokenPair{}, 0, true, control.ErrNotFound
	case 1:
		ms, ok := res[1].(int64)
		if !ok {
			return control.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
		}
		return control.TokenPair{}, time.Duration(ms) * time.Millisecond, false, nil
	case 2:
		raw, _ := res[1].(string)
		ip, body, _ := strings.Cut(raw, "\n")
		// The session no longer counts against the caps.
		_ = s.c.ZRem(context.WithoutCancel(ctx), s.ipKey(ip), id).Err()
		_ = s.c.ZRem(context.WithoutCancel(ctx), s.allKey(), id).Err()
		var w wireTokens
		if err := json.Unmarshal([]byte(body), &w); err != nil {
			return control.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: decode tokens: %w", err)
		}
		return control.TokenPair{Token: w.Token, RefreshToken: w.RefreshToken, ExpiresIn: time.Duration(w.ExpiresIn)}, 0, true, nil
	default:
		return control.TokenPair{}, 0, true, fmt.Errorf("session: redis wait: unexpected reply %v", res)
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
