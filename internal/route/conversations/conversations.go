// Package conversations keeps the conversations behind stored Responses
// (previous_response_id, GET/DELETE /v1/responses/{id}) where replicas
// share them: in Redis (Redis) or in the route store's table (SQL). Both
// implement pipeline.ResponseStore: a conversation is found and deleted only
// under the gateway key that stored it, expires after a TTL, and the
// store keeps within pipeline.ResponseLimits (per key and in total, oldest
// evicted first), exactly as pipeline.MemoryResponseStore does in one
// process.
package conversations

import (
	"context"
	"log/slog"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/store"
)

// SQL is an pipeline.ResponseStore on the route store's route_responses
// table (SQLite or PostgreSQL). Every Put deletes the expired rows and
// enforces the caps in one transaction; Run also sweeps expired rows
// while no conversation is stored.
type SQL struct {
	st    *store.Store
	lim   pipeline.ResponseLimits
	clock clock.Clock
}

// NewSQL returns the store on st within lim (zero fields: the defaults).
func NewSQL(st *store.Store, lim pipeline.ResponseLimits, clk clock.Clock) *SQL {
	return &SQL{st: st, lim: lim.WithDefaults(), clock: clk}
}

// Get implements pipeline.ResponseStore.
func (s *SQL) Get(ctx context.Context, owner, id string) ([]byte, bool, error) {
	return s.st.ResponseGet(ctx, owner, id, s.clock.Now())
}

// Put implements pipeline.ResponseStore.
func (s *SQL) Put(ctx context.Context, owner, id string, conv []byte) error {
	if int64(len(conv)) > s.lim.MaxBytes {
		return pipeline.ErrResponseTooLarge
	}
	now := s.clock.Now()
	return s.st.ResponsePut(ctx, owner, id, conv, now, now.Add(s.lim.TTL), store.ResponseCaps{
		MaxPerOwner: s.lim.MaxPerKey, MaxOwnerBytes: s.lim.MaxKeyBytes, Max: s.lim.Max, MaxTotalBytes: s.lim.MaxTotalBytes})
}

// Delete implements pipeline.ResponseStore.
func (s *SQL) Delete(ctx context.Context, owner, id string) (bool, error) {
	return s.st.ResponseDelete(ctx, owner, id, s.clock.Now())
}

// SweepInterval is how often Run deletes expired conversations.
const SweepInterval = 5 * time.Minute

// Run deletes expired conversations every SweepInterval until ctx ends,
// so that none outlives its TTL by much when no new one is stored.
func (s *SQL) Run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.st.ResponseSweep(ctx, s.clock.Now()); err != nil && ctx.Err() == nil {
				log.Warn("sweeping expired stored responses", "err", err)
			}
		}
	}
}
