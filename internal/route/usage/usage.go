// Package usage owns the gateway's request accounting: an pipeline.Gate that
// records how every routed request ended (tokens, cost, latency, status,
// fallback attempts) without blocking the request path, the batched
// writer into the route store, usage retention, the Prometheus request
// metrics, and the management endpoints that read the records (usage
// history and logs, latency telemetry, monitoring health, sessions).
package usage

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the recorder needs from the route store.
type Store interface {
	InsertUsage(ctx context.Context, recs []store.UsageRecord) error
	UsageLogs(ctx context.Context, f store.UsageFilter, limit, offset int) ([]store.UsageRecord, error)
	UsageTotals(ctx context.Context, f store.UsageFilter) (store.UsageTotals, error)
	UsageLastAt(ctx context.Context, f store.UsageFilter) (time.Time, bool, error)
	UsageBuckets(ctx context.Context, f store.UsageFilter, width time.Duration) ([]store.UsageBucket, error)
	UsageGroups(ctx context.Context, f store.UsageFilter, by string, limit int) ([]store.UsageGroup, error)
	UsageLatencies(ctx context.Context, since time.Time, limit int) ([]store.UsageSample, error)
	UsageSessionRows(ctx context.Context, since time.Time, limit int) ([]store.UsageSessionRow, error)
	UsageProviders(ctx context.Context, since time.Time) ([]string, error)
	DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int64, error)
	CompactUsage(ctx context.Context) error
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
}

// Pricer prices usage (the routing state, route/routing).
type Pricer interface {
	Cost(provider, model string, u llm.Usage) (usd float64, ok bool)
	// UnitCost prices an operation beyond chat: its tokens and its units.
	UnitCost(provider, model string, units []llm.Quantity, u llm.Usage) (usd float64, ok bool)
}

// ProviderStatus is one configured provider, for the health summary.
type ProviderStatus struct {
	ID     string
	Active bool // enabled with at least one usable connection
}

// Options configure a Recorder.
type Options struct {
	Store  Store
	Pricer Pricer // nil: cost 0
	// Providers lists the configured providers (config and stored).
	Providers func(ctx context.Context) ([]ProviderStatus, error)
	// CatalogCount is the number of provider kinds this build knows
	// (registered types plus catalog ids).
	CatalogCount int
	// Breakers lists the provider circuit breakers that are not plainly
	// closed, for /api/monitoring/health; nil: none are shown.
	Breakers   func() []Breaker
	Registerer prometheus.Registerer // nil: metrics are kept but not exported

	QueueSize  int           // records waiting for the writer (default 10000)
	BatchSize  int           // rows per write (default 500)
	FlushEvery time.Duration // longest wait before a partial batch is written (default 1 s)
	SweepEvery time.Duration // retention sweep period (default 1 h)
	TailEvery  time.Duration // how often a live tail asks the store for new records (default 1 s)
	// MaxTails caps the live tails open at once on this process, each
	// asking the store every TailEvery (default DefaultMaxTails); one more
	// is answered 429.
	MaxTails int
	Linger   time.Duration // after Run's context ends, how long a quiet queue is awaited (default 1 s)
	Clock    clock.Clock
	Log      *slog.Logger
}

// DefaultRetention is how long records are kept unless changed.
const DefaultRetention = 30 * 24 * time.Hour

// What a record keeps of strings that clients or upstreams choose.
const (
	maxField        = 256      // bytes of a key id, endpoint, model, session, provider or connection
	maxErrorMessage = 512      // bytes of an error message
	maxAttemptError = 256      // bytes of each attempt's error
	maxAttempts     = 16       // attempts listed in full (the count is kept)
	maxAttemptsJSON = 16 << 10 // bytes of the attempt list
)

const (
	sweepBatch      = 5000 // rows deleted per statement
	sweepMaxBatches = 200  // statements per sweep; the rest waits for the next one
)

// Recorder records routed requests; it is an pipeline.Gate.
//
// Outcomes wait in a bounded slice under a mutex rather than in a channel:
// the request path appends and wakes the writer only when a batch is full
// (or, after shutdown began, on every record), so a request costs no
// goroutine wake-up and the writer takes a whole batch at once.
type Recorder struct {
	opt     Options
	flushes chan chan struct{}
	wake    chan struct{} // capacity 1: a batch is ready (or a record arrived while closing)
	m       *metricSet

	mu      sync.Mutex
	queue   []entry // outcomes waiting for the writer, at most QueueSize
	closing bool    // Run's context ended: every record wakes the writer

	dropped  atomic.Uint64
	tails    atomic.Int64 // live tails open (tail.go)
	warnMu   sync.Mutex
	lastWarn time.Time
}

// meta is what a call contributes to its record.
type meta struct {
	keyID, endpoint, model, session string
	stream                          bool
	start                           time.Time
	modality                        llm.Modality
	units                           []llm.Quantity // what an operation asked for (Call.Units)
}

type entry struct {
	m   meta
	out pipeline.Outcome
}

// New builds a recorder; start its writer with Run.
func New(opt Options) *Recorder {
	if opt.QueueSize <= 0 {
		opt.QueueSize = 10000
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 500
	}
	if opt.FlushEvery <= 0 {
		opt.FlushEvery = time.Second
	}
	if opt.SweepEvery <= 0 {
		opt.SweepEvery = time.Hour
	}
	if opt.MaxTails <= 0 {
		opt.MaxTails = DefaultMaxTails
	}
	if opt.TailEvery <= 0 {
		opt.TailEvery = time.Second
	}
	if opt.Linger <= 0 {
		opt.Linger = time.Second
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{opt: opt, flushes: make(chan chan struct{}), wake: make(chan struct{}, 1), m: newMetrics()}
	if opt.Registerer != nil {
		r.m.register(opt.Registerer, r.opt.Log)
	}
	return r
}

// Admit implements pipeline.Gate: it admits every call and records its outcome.
func (r *Recorder) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	// m is captured by value: the closure is the call's one allocation.
	m := meta{keyID: c.KeyID, endpoint: c.Endpoint, model: c.Model, session: c.Session, stream: c.Stream, start: c.Start,
		modality: c.Modality, units: c.Units}
	return ctx, func(o pipeline.Outcome) { r.record(m, o) }, nil
}

// record queues an outcome for the writer; when the queue is full the
// record is dropped and counted, never waited for.
func (r *Recorder) record(m meta, o pipeline.Outcome) {
	r.mu.Lock()
	if len(r.queue) >= r.opt.QueueSize {
		r.mu.Unlock()
		r.dropped.Add(1)
		r.m.dropped.Inc()
		r.warnDropped()
		return
	}
	r.queue = append(r.queue, entry{m: m, out: o})
	wake := len(r.queue) == r.opt.BatchSize || r.closing
	r.mu.Unlock()
	if wake {
		select {
		case r.wake <- struct{}{}:
		default: // the writer is already due to look
		}
	}
}

// queued is the number of outcomes waiting for the writer.
func (r *Recorder) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// take hands the queued outcomes to the writer, giving it spare (emptied)
// to fill next.
func (r *Recorder) take(spare []entry) []entry {
	r.mu.Lock()
	q := r.queue
	r.queue = spare[:0]
	r.mu.Unlock()
	return q
}

func (r *Recorder) warnDropped() {
	now := r.opt.Clock.Now()
	r.warnMu.Lock()
	if now.Sub(r.lastWarn) < time.Minute && !r.lastWarn.IsZero() {
		r.warnMu.Unlock()
		return
	}
	r.lastWarn = now
	r.warnMu.Unlock()
	r.opt.Log.Warn("usage queue full: records dropped", "dropped_total", r.dropped.Load())
}

// Dropped is the number of records dropped because the queue was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Run writes queued records in batches and sweeps old records, until ctx
// ends; then it writes what is still queued and returns.
func (r *Recorder) Run(ctx context.Context) error {
	tick := time.NewTicker(r.opt.FlushEvery)
	defer tick.Stop()
	// The first sweep comes a minute after start (a process restarted
	// more often than SweepEvery still sweeps), then every SweepEvery.
	sweep := time.NewTimer(min(time.Minute, r.opt.SweepEvery))
	defer sweep.Stop()
	batch := make([]store.UsageRecord, 0, r.opt.BatchSize)
	var spare []entry
	// Writes outlive ctx: records taken from the queue are written even
	// when shutdown has begun.
	base := context.WithoutCancel(ctx)
	write := func() {
		if len(batch) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(base, 10*time.Second)
		defer cancel()
		if err := r.opt.Store.InsertUsage(wctx, batch); err != nil {
			r.m.writeFailed.Add(float64(len(batch)))
			r.opt.Log.Warn("writing usage records failed", "records", len(batch), "err", err)
		}
		clear(batch)
		batch = batch[:0]
	}
	// drain writes everything queued, BatchSize rows at a time.
	drain := func() {
		q := r.take(spare)
		for i := range q {
			batch = append(batch, r.toRecord(q[i]))
			if len(batch) >= r.opt.BatchSize {
				write()
			}
		}
		write()
		clear(q)
		spare = q
	}
	for {
		select {
		case <-ctx.Done():
			// Requests still finishing on the draining server report
			// after ctx ended: keep taking them until the queue has been
			// quiet for Linger (at most 30 s in all).
			r.mu.Lock()
			r.closing = true
			r.mu.Unlock()
			limit := time.After(30 * time.Second)
			for {
				drain()
				select {
				case <-r.wake:
					continue
				case <-time.After(r.opt.Linger):
				case <-limit:
				}
				drain()
				return nil
			}
		case <-r.wake:
			drain()
		case <-tick.C:
			drain()
		case done := <-r.flushes:
			drain()
			close(done)
		case <-sweep.C:
			if _, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
				r.opt.Log.Warn("usage retention sweep failed", "err", err)
			}
			sweep.Reset(r.opt.SweepEvery)
		}
	}
}

// Flush makes the running writer store everything queued so far and
// waits for it.
func (r *Recorder) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case r.flushes <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// toRecord turns a queued outcome into a row and counts it in the
// metrics; it runs on the writer goroutine, off the request path.
func (r *Recorder) toRecord(e entry) store.UsageRecord {
	o, m := e.out, e.m
	u := o.Usage
	t := func(s string) string { return truncate(s, maxField) }
	rec := store.UsageRecord{
		At: m.start.Add(o.Latency), KeyID: t(m.keyID), Endpoint: t(m.endpoint), Model: t(m.model), Session: t(m.session),
		Stream: m.stream, Provider: t(o.Target.Provider), TargetModel: t(o.Target.Model), Connection: t(o.Connection),
		InputTokens: int64(u.InputTokens), OutputTokens: int64(u.OutputTokens), CacheReadTokens: int64(u.CacheReadTokens),
		CacheWriteTokens: int64(u.CacheWriteTokens), ReasoningTokens: int64(u.ReasoningTokens), Estimated: u.Estimated,
		LatencyMS: o.Latency.Milliseconds(), TTFTMS: o.TTFT.Milliseconds(), Status: o.Status,
		Attempts: len(o.Attempts), Cache: o.Cache, Idempotent: o.Idempotent,
	}
	if rec.Status == 0 {
		// The pipeline always sets the status the client received; an
		// outcome without one is a success, or a failure without an
		// upstream status, which every dialect answers with 502.
		rec.Status = http.StatusOK
		if o.Err != nil {
			rec.Status = http.StatusBadGateway
		}
	}
	if o.Err != nil {
		rec.ErrorType = t(string(o.Err.Type))
		rec.ErrorMessage = truncate(o.Err.Message, maxErrorMessage)
	}
	if len(o.Attempts) > 0 {
		rec.AttemptsJSON = attemptsJSON(o.Attempts)
	}
	if m.modality != "" {
		// An operation beyond chat counts its first unit: what it used,
		// or, refused or failed before an answer, what it asked for.
		rec.Modality = t(string(m.modality))
		units := o.Units
		if units == nil {
			units = m.units
		}
		if len(units) > 0 {
			rec.Unit, rec.Quantity = t(string(units[0].Unit)), units[0].N
		}
	}
	if r.opt.Pricer != nil && rec.Provider != "" && o.Cache != "HIT" && !o.Idempotent {
		usd, ok := 0.0, false
		if o.Units != nil {
			usd, ok = r.opt.Pricer.UnitCost(o.Target.Provider, o.Target.Model, o.Units, u)
		} else {
			usd, ok = r.opt.Pricer.Cost(o.Target.Provider, o.Target.Model, u)
		}
		if ok {
			rec.CostUSD = usd
		}
	}
	if o.CutShort {
		// Charged what was delivered or the reservation, whichever is
		// more (route/limits charges the key the same).
		rec.CostUSD = max(rec.CostUSD, o.Reserved)
	}
	r.m.observe(&rec, o)
	return rec
}

// attemptsJSON is the stored attempt list: the first maxAttempts, their
// strings cut, at most maxAttemptsJSON bytes.
func attemptsJSON(attempts []router.Attempt) string {
	short := len(attempts) <= maxAttempts
	for i := 0; short && i < len(attempts); i++ {
		a := &attempts[i]
		short = len(a.Provider) <= maxField && len(a.Model) <= maxField && len(a.Connection) <= maxField && len(a.Error) <= maxAttemptError
	}
	if short { // as they are: the usual case, without a copy
		if b, err := json.Marshal(attempts); err == nil && len(b) <= maxAttemptsJSON {
			return string(b)
		}
	}
	list := make([]router.Attempt, min(len(attempts), maxAttempts))
	for i := range list {
		a := attempts[i]
		a.Provider, a.Model, a.Connection = truncate(a.Provider, maxField), truncate(a.Model, maxField), truncate(a.Connection, maxField)
		a.Error = truncate(a.Error, maxAttemptError)
		list[i] = a
	}
	for n := len(list); n > 0; n /= 2 {
		if b, err := json.Marshal(list[:n]); err == nil && len(b) <= maxAttemptsJSON {
			return string(b)
		}
	}
	return "[]"
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
