package usage

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// Tail streams: how many records a poll of the store returns at most,
// and how often a quiet stream says it is alive.
const (
	tailBatch = 100
	tailAlive = 15 * time.Second
)

// DefaultMaxTails is Options.MaxTails's default.
const DefaultMaxTails = 16

// tail streams the records written from now on as server-sent events
// (`event: usage`, `id:` the record's id, `data:` the record as in
// /api/usage/logs), oldest first, with the logs' filters. It asks the
// store (so it sees every replica's records) every TailEvery; at most
// tailBatch records per poll are sent, the log pages have them all. A
// client that reconnects with Last-Event-ID resumes after that record.
func (r *Recorder) tail(w http.ResponseWriter, req *http.Request) error {
	if r.tails.Add(1) > int64(r.opt.MaxTails) {
		r.tails.Add(-1)
		return httpx.Errorf(http.StatusTooManyRequests, "too_many_tails", "%d live tails are open; close one first", r.opt.MaxTails)
	}
	defer r.tails.Add(-1)
	ctx := req.Context()
	f := filterFrom(req.URL.Query())
	var last int64
	if v := req.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return httpx.BadRequest("Last-Event-ID must be a record id")
		}
		last = n
	} else {
		recs, err := r.opt.Store.UsageLogs(ctx, f, 1, 0)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			last = recs[0].ID
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": usage tail\n\n"); err != nil {
		return nil
	}
	_ = rc.Flush()
	every := r.opt.TailEvery
	tick := time.NewTicker(every)
	defer tick.Stop()
	quiet := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		recs, err := r.opt.Store.UsageLogs(ctx, f, tailBatch, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.opt.Log.Warn("usage tail: reading records failed", "err", err)
			continue
		}
		fresh := newer(recs, last)
		for _, rec := range fresh {
			b, err := json.Marshal(rec)
			if err != nil {
				return nil
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: usage\ndata: %s\n\n", rec.ID, b); err != nil {
				return nil
			}
			last = rec.ID
		}
		quiet += every
		if len(fresh) > 0 {
			quiet = 0
		} else if quiet >= tailAlive {
			quiet = 0
			if _, err := fmt.Fprint(w, ": alive\n\n"); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// newer returns the records (newest first, as the store lists them) with
// an id above last, oldest first.
func newer(recs []store.UsageRecord, last int64) []store.UsageRecord {
	var out []store.UsageRecord
	for _, rec := range recs {
		if rec.ID > last {
			out = append(out, rec)
		}
	}
	slices.Reverse(out)
	return out
}
