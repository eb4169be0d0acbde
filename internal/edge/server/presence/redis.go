package presence

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/control"
)

// touchScript records a heartbeat unless a newer one is already recorded,
// so that replicas racing on one device never move it back in time.
//
//	KEYS[1]  prefix+"p:"+deviceID, holding "<unix ms>|<0|1>"
//	ARGV[1]  heartbeat time (unix ms, decimal)
//	ARGV[2]  exit consent ("0" or "1")
//	ARGV[3]  expiry (ms, >= 1)
//
// It returns 1 when the heartbeat was written and 0 when a newer one was
// already there. An equal timestamp overwrites (the later write wins, as in
// Memory). The stored value is built from ARGV strings, never from Lua
// numbers, so no precision is lost; unix ms (~1.8e12) compare exactly as
// Lua doubles.
var touchScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep then
    local ms = tonumber(string.sub(cur, 1, sep - 1))
    if ms and ms > tonumber(ARGV[1]) then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
`)

// Redis keeps presence in Redis so every replica sharing the server and
// prefix sees every heartbeat. Each device is one string key
// prefix+"p:"+deviceID holding "<unix ms>|<0|1>" that expires ttl after
// its last accepted heartbeat. Touch is one EVALSHA (compare-and-set,
// newest heartbeat wins) and Lookup one MGET. Times are stored with
// millisecond precision.
type Redis struct {
	c      *redis.Client
	prefix string
	ttl    any // expiry in ms (>= 1), boxed once for the hot path
}

var _ control.PresenceStore = (*Redis)(nil)

// NewRedis returns a store keeping presence under prefix+"p:"+deviceID in c;
// a device is forgotten ttl after its last heartbeat (use a multiple of the
// online window). A ttl below one millisecond is raised to one.
func NewRedis(c *redis.Client, prefix string, ttl time.Duration) *Redis {
	ms := max(ttl.Milliseconds(), 1)
	return &Redis{c: c, prefix: prefix, ttl: ms}
}

func (r *Redis) key(id string) string { return r.prefix + "p:" + id }

// Touch records p unless a newer heartbeat is already recorded.
func (r *Redis) Touch(ctx context.Context, p control.Presence) error {
	consent := "0"
	if p.ExitConsent {
		consent = "1"
	}
	err := touchScript.Run(ctx, r.c, []string{r.key(p.DeviceID)},
		strconv.FormatInt(p.At.UnixMilli(), 10), consent, r.ttl).Err()
	if err != nil {
		return fmt.Errorf("presence: redis touch %q: %w", p.DeviceID, err)
	}
	return nil
}

// Lookup returns the recorded presence of ids in one MGET.
func (r *Redis) Lookup(ctx context.Context, ids []string) (map[string]control.Presence, error) {
	out := make(map[string]control.Presence, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.key(id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("presence: redis lookup: %w", err)
	}
	if len(vals) != len(ids) {
		return nil, fmt.Errorf("presence: redis lookup: %d replies for %d keys", len(vals), len(ids))
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // nil: unknown or expired
		}
		p, ok := decode(ids[i], s)
		if !ok {
			return nil, fmt.Errorf("presence: redis lookup %q: malformed value %q", ids[i], s)
		}
		out[ids[i]] = p
	}
	return out, nil
}

// decode parses "<unix ms>|<0|1>".
func decode(id, s string) (control.Presence, bool) {
	msStr, consent, ok := strings.Cut(s, "|")
	if !ok || (consent != "0" && consent != "1") {
		return control.Presence{}, false
	}
	ms, err := strconv.ParseInt(msStr, 10, 64)
	if err != nil {
		return control.Presence{}, false
	}
	return control.Presence{DeviceID: id, At: time.UnixMilli(ms), ExitConsent: consent == "1"}, true
}
