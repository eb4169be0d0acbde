package app

import (
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/conversations"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store"
)

// newResponseStore builds the store of Responses conversations
// (previous_response_id), as the cache chooses its shared tier: Redis
// when d.Redis is set, else the route store's table when there is one,
// else this process's memory. sql is the table store, whose expired rows
// Run sweeps; nil otherwise.
func newResponseStore(cfg *config.Config, d Deps, st *store.Store) (rs pipeline.ResponseStore, sql *conversations.SQL) {
	r := cfg.Route
	lim := pipeline.ResponseLimits{TTL: r.ResponsesTTL, MaxBytes: int64(r.ResponsesMaxBytes), MaxPerKey: r.ResponsesMaxPerKey,
		MaxKeyBytes: int64(r.ResponsesMaxKeyBytes), Max: r.ResponsesMax, MaxTotalBytes: int64(r.ResponsesMaxTotalBytes)}
	if d.Redis != nil {
		return conversations.NewRedis(d.Redis, d.RedisPrefix, lim, d.Clock), nil
	}
	if st != nil {
		sql = conversations.NewSQL(st, lim, d.Clock)
		return sql, sql
	}
	return pipeline.NewMemoryResponseStore(lim, d.Clock), nil
}
