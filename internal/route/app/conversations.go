package app

import (
	"context"

	"github.com/omniedge/omni/internal/route/conversations"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// conversationsModule builds the store of Responses conversations
// (previous_response_id), as the cache chooses its shared tier: Redis
// when Deps.Redis is set, else the route store's table when there is
// one (whose expired rows the module's Run sweeps), else this process's
// memory.
func conversationsModule(_ context.Context, w *wiring) (feature.Module, error) {
	r, d := w.cfg.Route, w.d
	lim := pipeline.ResponseLimits{TTL: r.ResponsesTTL, MaxBytes: int64(r.ResponsesMaxBytes), MaxPerKey: r.ResponsesMaxPerKey,
		MaxKeyBytes: int64(r.ResponsesMaxKeyBytes), Max: r.ResponsesMax, MaxTotalBytes: int64(r.ResponsesMaxTotalBytes)}
	var rs pipeline.ResponseStore
	if d.Redis != nil {
		rs = conversations.NewRedis(d.Redis, d.RedisPrefix, lim, d.Clock)
	} else if w.st != nil {
		rs = conversations.NewSQL(w.st, lim, d.Clock)
	} else {
		rs = pipeline.NewMemoryResponseStore(lim, d.Clock)
	}
	return conversations.Module(rs, d.Log), nil
}
