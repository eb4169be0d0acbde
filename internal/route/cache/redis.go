package cache

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisTier is the cache's second tier on Redis: one string per entry
// (with a PX expiry) under prefix+"cache:v:"+key, and a sorted set
// prefix+"cache:idx" of the keys scored by expiry, which bounds the
// number of entries (the soonest to expire, that is the oldest, go first).
type RedisTier struct {
	c      *redis.Client
	prefix string
}

// NewRedisTier returns a tier on c under keys starting with prefix.
func NewRedisTier(c *redis.Client, prefix string) *RedisTier {
	return &RedisTier{c: c, prefix: prefix + "cache:"}
}

func (t *RedisTier) val(key string) string { return t.prefix + "v:" + key }
func (t *RedisTier) idx() string           { return t.prefix + "idx" }

// CacheGet implements Tier.
func (t *RedisTier) CacheGet(ctx context.Context, key string, now time.Time) ([]byte, time.Time, bool, error) {
	pipe := t.c.Pipeline()
	get := pipe.Get(ctx, t.val(key))
	score := pipe.ZScore(ctx, t.idx(), key)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, time.Time{}, false, err
	}
	v, err := get.Bytes()
	if err != nil {
		return nil, time.Time{}, false, nil
	}
	exp := now.Add(time.Minute) // the index lost the key: keep it briefly
	if s, err := score.Result(); err == nil {
		exp = time.UnixMilli(int64(s))
	}
	if !now.Before(exp) {
		return nil, time.Time{}, false, nil
	}
	return v, exp, true, nil
}

// CachePut implements Tier.
func (t *RedisTier) CachePut(ctx context.Context, key string, value []byte, now, expires time.Time, maxRows int) error {
	ttl := expires.Sub(now)
	if ttl <= 0 {
		return nil
	}
	pipe := t.c.TxPipeline()
	pipe.Set(ctx, t.val(key), value, ttl)
	pipe.ZAdd(ctx, t.idx(), redis.Z{Score: float64(expires.UnixMilli()), Member: key})
	pipe.ZRemRangeByScore(ctx, t.idx(), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
	card := pipe.ZCard(ctx, t.idx())
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if over := card.Val() - int64(maxRows); maxRows > 0 && over > 0 {
		old, err := t.c.ZPopMin(ctx, t.idx(), over).Result()
		if err != nil {
			return err
		}
		keys := make([]string, len(old))
		for i, z := range old {
			keys[i] = t.val(z.Member.(string))
		}
		return t.c.Del(ctx, keys...).Err()
	}
	return nil
}

// CacheCount implements Tier.
func (t *RedisTier) CacheCount(ctx context.Context, now time.Time) (int, error) {
	n, err := t.c.ZCount(ctx, t.idx(), "("+strconv.FormatInt(now.UnixMilli(), 10), "+inf").Result()
	return int(n), err
}

// CacheClear implements Tier.
func (t *RedisTier) CacheClear(ctx context.Context) (int, error) {
	n := 0
	for {
		keys, err := t.c.ZPopMin(ctx, t.idx(), 500).Result()
		if err != nil {
			return n, err
		}
		if len(keys) == 0 {
			return n, nil
		}
		del := make([]string, len(keys))
		for i, z := range keys {
			del[i] = t.val(z.Member.(string))
		}
		d, err := t.c.Del(ctx, del...).Result()
		if err != nil {
			return n, err
		}
		n += int(d)
	}
}
