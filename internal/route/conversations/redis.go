package conversations

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// Redis is an pipeline.ResponseStore in Redis, under keys starting with
// prefix+"responses:" (P below). A conversation is the string
// P+"v:"+member with a PX expiry, where member is the owner's tag (a
// hash of the gateway key id: no key id is written to Redis) ":" the
// response id; it is a member of the sorted sets P+"o:"+tag (the
// owner's ids) and P+"all" (every member), both scored by expiry in
// milliseconds of the gateway's clock, which is also creation order.
// The hash P+"size" holds each member's size, P+"ob" each owner's bytes
// and P+"bytes" the total. One script stores a conversation, drops up to
// 100 expired ones and evicts beyond the caps, atomically; every key
// expires a TTL after the last store.
type Redis struct {
	c      *redis.Client
	prefix string
	lim    pipeline.ResponseLimits
	clock  clock.Clock
}

// NewRedis returns the store on c under keys starting with prefix,
// within lim (zero fields: the defaults).
func NewRedis(c *redis.Client, prefix string, lim pipeline.ResponseLimits, clk clock.Clock) *Redis {
	return &Redis{c: c, prefix: prefix + "responses:", lim: lim.WithDefaults(), clock: clk}
}

// ownerTag names an owner in key names: fixed length, no separator.
func ownerTag(owner string) string {
	sum := sha256.Sum256([]byte("omni stored responses owner\x00" + owner))
	return hex.EncodeToString(sum[:16])
}

func (r *Redis) member(owner, id string) string { return ownerTag(owner) + ":" + id }

// dropLua removes one member everywhere and corrects the byte counts.
const dropLua = `
local P = ARGV[1]
local all, sizes, obytes, total = P .. 'all', P .. 'size', P .. 'ob', P .. 'bytes'
local function drop(m)
  local sz = tonumber(redis.call('HGET', sizes, m) or '0')
  local sep = string.find(m, ':', 1, true)
  local t, i = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  redis.call('DEL', P .. 'v:' .. m)
  redis.call('ZREM', P .. 'o:' .. t, i)
  redis.call('ZREM', all, m)
  redis.call('HDEL', sizes, m)
  if redis.call('HINCRBY', obytes, t, -sz) <= 0 then redis.call('HDEL', obytes, t) end
  redis.call('DECRBY', total, sz)
end
-- oldest of set other than keep, or nil
local function oldest(set, keep)
  for _, m in ipairs(redis.call('ZRANGE', set, 0, 1)) do
    if m ~= keep then return m end
  end
  return nil
end
`

// putScript: ARGV P, tag, id, value, now ms, ttl ms, max per owner,
// max owner bytes, max, max total bytes.
var putScript = redis.NewScript(dropLua + `
local tag, id, val = ARGV[2], ARGV[3], ARGV[4]
local now, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local maxO, maxOB, maxA, maxAB = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', all, '-inf', now, 'LIMIT', 0, 100)) do drop(m) end
local member, okey = tag .. ':' .. id, P .. 'o:' .. tag
if redis.call('ZSCORE', all, member) then drop(member) end
local size = string.len(val)
redis.call('SET', P .. 'v:' .. member, val, 'PX', ttl)
redis.call('ZADD', okey, now + ttl, id)
redis.call('ZADD', all, now + ttl, member)
redis.call('HSET', sizes, member, size)
redis.call('HINCRBY', obytes, tag, size)
redis.call('INCRBY', total, size)
while redis.call('ZCARD', okey) > maxO or tonumber(redis.call('HGET', obytes, tag) or '0') > maxOB do
  local id0 = oldest(okey, id)
  if not id0 then break end
  drop(tag .. ':' .. id0)
end
while redis.call('ZCARD', all) > maxA or tonumber(redis.call('GET', total) or '0') > maxAB do
  local m = oldest(all, member)
  if not m then break end
  drop(m)
end
for _, k in ipairs({okey, all, sizes, obytes, total}) do redis.call('PEXPIRE', k, ttl) end
return 1
`)

// deleteScript: ARGV P, member, now ms. 0: not stored, 1: deleted, 2:
// deleted but already expired.
var deleteScript = redis.NewScript(dropLua + `
local m = ARGV[2]
local score = redis.call('ZSCORE', all, m)
if not score then
  redis.call('DEL', P .. 'v:' .. m)
  return 0
end
drop(m)
if tonumber(score) > tonumber(ARGV[3]) then return 1 end
return 2
`)

// Get implements pipeline.ResponseStore.
func (r *Redis) Get(ctx context.Context, owner, id string) ([]byte, bool, error) {
	m := r.member(owner, id)
	pipe := r.c.TxPipeline()
	get := pipe.Get(ctx, r.prefix+"v:"+m)
	score := pipe.ZScore(ctx, r.prefix+"all", m)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("stored responses: redis get: %w", err)
	}
	v, err := get.Bytes()
	if err != nil {
		return nil, false, nil
	}
	exp, err := score.Result()
	if err != nil || int64(exp) <= r.clock.Now().UnixMilli() {
		return nil, false, nil
	}
	return v, true, nil
}

// Put implements pipeline.ResponseStore.
func (r *Redis) Put(ctx context.Context, owner, id string, conv []byte) error {
	if int64(len(conv)) > r.lim.MaxBytes {
		return pipeline.ErrResponseTooLarge
	}
	err := putScript.Run(ctx, r.c, nil, r.prefix, ownerTag(owner), id, conv, r.clock.Now().UnixMilli(), max(1, r.lim.TTL.Milliseconds()),
		r.lim.MaxPerKey, r.lim.MaxKeyBytes, r.lim.Max, r.lim.MaxTotalBytes).Err()
	if err != nil {
		return fmt.Errorf("stored responses: redis put: %w", err)
	}
	return nil
}

// Delete implements pipeline.ResponseStore.
func (r *Redis) Delete(ctx context.Context, owner, id string) (bool, error) {
	n, err := deleteScript.Run(ctx, r.c, nil, r.prefix, r.member(owner, id), r.clock.Now().UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("stored responses: redis delete: %w", err)
	}
	return n == 1, nil
}
