package usage

import (
	"context"
	"strconv"
	"time"

	"github.com/omniedge/omni/internal/route/store"
)

// Retention is how long records are kept: the stored setting (whole
// days), DefaultRetention when unset.
func (r *Recorder) Retention(ctx context.Context) (time.Duration, error) {
	v, ok, err := r.opt.Store.Setting(ctx, store.SettingUsageRetentionDays)
	if err != nil || !ok {
		return DefaultRetention, err
	}
	days, err := strconv.Atoi(v)
	if err != nil || days < 1 {
		return DefaultRetention, nil
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// Sweep deletes records older than the retention age, in bounded batches
// (at most sweepMaxBatches statements of sweepBatch rows, so one sweep
// never holds the database for long), then compacts the database when
// something was deleted. It reports how many records went.
func (r *Recorder) Sweep(ctx context.Context) (int64, error) {
	keep, err := r.Retention(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := r.opt.Clock.Now().Add(-keep)
	var total int64
	for range sweepMaxBatches {
		n, err := r.opt.Store.DeleteUsageBefore(ctx, cutoff, sweepBatch)
		total += n
		if err != nil {
			return total, err
		}
		if n < sweepBatch {
			break
		}
	}
	if total > 0 {
		if err := r.opt.Store.CompactUsage(ctx); err != nil {
			return total, err
		}
		r.opt.Log.Info("usage records past retention deleted", "records", total, "retention_days", int(keep/(24*time.Hour)))
	}
	return total, nil
}
