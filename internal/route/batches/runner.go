package batches

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
)

// RunnerConfig tunes how batches run; zero fields take the defaults.
type RunnerConfig struct {
	// Concurrency is the most lines one process runs at once (default 32).
	Concurrency int
	// YieldAbove is the number of interactive requests in flight above
	// which the runner yields (see allowed): one line at a time, at
	// least yieldGap apart, until YieldFor after the load fell back. The
	// default, 0, yields to any interactive request; negative: never.
	YieldAbove int
	// YieldFor is how long the runner keeps yielding once it saw the
	// interactive load above YieldAbove (default 20ms): a client's next
	// request usually follows its last one closely.
	YieldFor time.Duration
	// Poll is how often the runner looks for work it was not told about
	// (batches made by another replica, finished lines; default 100ms).
	Poll time.Duration
	// Lease is how long a claimed line or batch phase stays a process's
	// without being renewed (default 2 minutes); a line whose lease ran
	// out is one whose process stopped.
	Lease time.Duration
	// Drain is how long in-flight lines may finish once the gateway
	// stops (default 10s); those cut short are recorded as interrupted.
	Drain time.Duration
}

func (c RunnerConfig) withDefaults() RunnerConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.YieldFor <= 0 {
		c.YieldFor = 20 * time.Millisecond
	}
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Minute
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	return c
}

// Runner executes batches: it validates new batches' input files into
// lines, runs their lines through the gateway (feature.Dispatcher) as
// the batch's key, and writes the output and error files.
type Runner struct {
	s     *Service
	d     feature.Dispatcher
	cfg   RunnerConfig
	owner string // this process's lease owner id

	wakeCh  chan struct{}
	doneCh  chan struct{}
	results chan result
	running atomic.Int64 // lines in flight
	phases  sync.WaitGroup
	busyVal atomic.Bool // a validation is under way
	busyFin atomic.Bool // a finalization is under way

	keys   sync.Map // batch id → *record (key id, endpoint)
	cached atomic.Int64

	busyUntil time.Time // yielding until then (allowed)
	lastStart time.Time // when the last line started

	queue   []string         // in-progress batch ids to claim lines of, round robin
	ready   []claimed        // lines claimed and not started yet
	claimCh chan claimResult // the claim under way, nil when none
	dropped sync.Map         // batch ids cancelled here since the last housekeeping
}

func newRunner(s *Service, d feature.Dispatcher, cfg RunnerConfig) *Runner {
	return &Runner{s: s, d: d, cfg: cfg.withDefaults(), owner: newID("runner_"),
		wakeCh: make(chan struct{}, 1), doneCh: make(chan struct{}, 1)}
}

// drop tells the runner that batch id was cancelled: it starts none of
// the lines of it it has claimed.
func (r *Runner) drop(id string) {
	r.dropped.Store(id, true)
	r.wake()
}

// wake tells the runner there may be work.
func (r *Runner) wake() {
	select {
	case r.wakeCh <- struct{}{}:
	default:
	}
}

func (r *Runner) now() int64 { return r.s.clock.Now().UnixMilli() }

// Run runs batches until ctx ends, then lets the lines in flight finish
// (for at most Drain) and records them.
func (r *Runner) Run(ctx context.Context) error {
	r.results = make(chan result, 256)
	dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		r.flush(context.WithoutCancel(ctx))
	}()
	var workers sync.WaitGroup
	var lastHouse, lastRenew time.Time
	for ctx.Err() == nil {
		if time.Since(lastHouse) >= r.cfg.Poll {
			lastHouse = time.Now()
			r.housekeep(ctx)
		}
		if time.Since(lastRenew) >= r.cfg.Lease/4 {
			lastRenew = time.Now()
			if err := r.s.store.renew(ctx, r.owner, r.now()+r.cfg.Lease.Milliseconds()); err != nil && ctx.Err() == nil {
				r.s.log.Warn("batches: renewing leases failed", "err", err)
			}
			r.interrupted(ctx)
		}
		if n, yielding := r.feed(ctx, dctx, &workers); n == 0 {
			wait := r.cfg.Poll
			if yielding {
				wait = yieldPoll
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-r.wakeCh:
				lastHouse = time.Time{} // new work: look at once
			case <-r.doneCh:
			case <-t.C:
			}
			t.Stop()
		}
	}
	// Let the lines in flight finish, then cut them short.
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	t := time.NewTimer(r.cfg.Drain)
	select {
	case <-done:
	case <-t.C:
		stop()
		<-done
	}
	t.Stop()
	close(r.results)
	<-flushed
	if r.claimCh != nil {
		r.claimed(<-r.claimCh)
	}
	if len(r.ready) > 0 {
		// Claimed and never started: another process may run them.
		r.logErr(context.Background(), "giving back lines", r.s.store.unclaim(context.WithoutCancel(ctx), r.owner, r.ready))
		r.ready = nil
	}
	r.phases.Wait()
	return nil
}

// allowed is how many lines may be in flight now: Concurrency, or while
// the runner yields — interactive requests in flight exceed YieldAbove,
// or did less than YieldFor ago — one line at a time, started at least
// yieldGap apart (so a batch under constant interactive load still
// makes progress).
func (r *Runner) allowed() int64 {
	if r.cfg.YieldAbove < 0 {
		return int64(r.cfg.Concurrency)
	}
	now := time.Now()
	if r.d.Interactive() > r.cfg.YieldAbove {
		r.busyUntil = now.Add(r.cfg.YieldFor)
	}
	if now.Before(r.busyUntil) {
		if now.Sub(r.lastStart) < yieldGap {
			return 0
		}
		return 1
	}
	return int64(r.cfg.Concurrency)
}

// yieldGap is the least time between two lines a yielding runner
// starts: at most 50 lines a second beside interactive traffic.
const yieldGap = 20 * time.Millisecond

// yieldPoll is how often a runner at its limit looks again at the
// interactive load.
const yieldPoll = 2 * time.Millisecond

// feed claims lines up to the free slots and starts them; it returns how
// many it started (0: nothing to run or no free slot) and whether it
// holds back for interactive traffic.
func (r *Runner) feed(ctx, dctx context.Context, workers *sync.WaitGroup) (int, bool) {
	started := 0
	for ctx.Err() == nil {
		allowed := r.allowed()
		free := allowed - r.running.Load()
		if free <= 0 {
			return started, allowed < int64(r.cfg.Concurrency)
		}
		// Claims run beside the lines: the next is asked for while
		// fewer than Concurrency lines are ready.
		if r.claimCh != nil {
			select {
			case c := <-r.claimCh:
				r.claimed(c)
			default:
			}
		}
		if len(r.ready) < r.cfg.Concurrency && r.claimCh == nil && len(r.queue) > 0 {
			r.claim(ctx, r.queue[0])
		}
		if len(r.ready) == 0 {
			if r.claimCh == nil {
				return started, false
			}
			select {
			case c := <-r.claimCh:
				r.claimed(c)
			case <-ctx.Done():
			}
			continue
		}
		n := min(int(free), len(r.ready))
		lines := r.ready[:n:n]
		r.ready = r.ready[n:]
		var dropped []claimed
		lines = slices.DeleteFunc(lines, func(c claimed) bool {
			if _, ok := r.dropped.Load(c.BatchID); ok {
				dropped = append(dropped, c)
				return true
			}
			return false
		})
		if len(dropped) > 0 {
			r.logErr(ctx, "giving back lines", r.s.store.unclaim(ctx, r.owner, dropped))
		}
		if len(lines) > 0 {
			r.lastStart = time.Now()
		}
		for _, c := range lines {
			r.running.Add(1)
			workers.Add(1)
			started++
			go func(c claimed) {
				defer workers.Done()
				res := r.runLine(dctx, c)
				r.results <- res
				r.running.Add(-1)
				select {
				case r.doneCh <- struct{}{}:
				default:
				}
			}(c)
		}
	}
	return started, false
}

// claimResult is what a claim of a batch's lines got.
type claimResult struct {
	id    string
	want  int
	lines []claimed
	err   error
}

// claim asks for lines of batch id in the background (claimCh).
func (r *Runner) claim(ctx context.Context, id string) {
	ch := make(chan claimResult, 1)
	r.claimCh = ch
	want := 2 * r.cfg.Concurrency
	until := r.now() + r.cfg.Lease.Milliseconds()
	go func() {
		lines, err := r.s.store.claimLines(ctx, id, r.owner, want, until)
		ch <- claimResult{id: id, want: want, lines: lines, err: err}
	}()
}

// claimed takes a claim's lines and moves the batch on in the queue.
func (r *Runner) claimed(c claimResult) {
	r.claimCh = nil
	if c.err != nil {
		r.logErr(context.Background(), "claiming lines", c.err)
	}
	r.ready = append(r.ready, c.lines...)
	if i := slices.Index(r.queue, c.id); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
		if c.err == nil && len(c.lines) == c.want {
			r.queue = append(r.queue, c.id) // more there: round robin between batches
		}
	}
}

// flushLinger is how long a finished line's result waits for others
// before they are written together.
const flushLinger = 20 * time.Millisecond

// flush writes the results of finished lines, many per transaction,
// until results is closed.
func (r *Runner) flush(ctx context.Context) {
	var buf []result
	write := func() {
		if len(buf) == 0 {
			return
		}
		for try := 0; try < 5; try++ {
			settled, err := r.s.store.finish(ctx, r.owner, buf)
			if err == nil {
				if settled {
					r.wake() // a batch has no line left: finalize it now
				}
				break
			}
			r.s.log.Warn("batches: recording results failed", "err", err)
			time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
		}
		buf = buf[:0]
	}
	// A result waits up to flushLinger for others to share its
	// transaction: one commit per line would cost the database more
	// than the line costs the gateway.
	for res := range r.results {
		buf = append(buf, res)
		t := time.NewTimer(flushLinger)
	gather:
		for len(buf) < 256 {
			select {
			case res, ok := <-r.results:
				if !ok {
					break gather
				}
				buf = append(buf, res)
			case <-t.C:
				break gather
			}
		}
		t.Stop()
		write()
	}
	write()
}

// lineRequest is what an input line's body must say of itself.
type lineRequest struct {
	Stream bool `json:"stream"`
}

// runLine sends a line through the gateway as the batch's key.
func (r *Runner) runLine(ctx context.Context, c claimed) result {
	rec := r.batchKey(ctx, c.BatchID)
	if rec == nil {
		return errorResult(c, "batch_missing", "the batch is gone")
	}
	ans, err := r.d.Dispatch(ctx, rec.KeyID, http.MethodPost, rec.Endpoint, []byte(c.Request), r.s.limits.MaxAnswerBytes)
	if err != nil {
		// Cut short as the gateway stopped: it may have reached the
		// upstream, so it is not run again (at most once).
		return errorResult(c, "interrupted", "the gateway stopped while the request was in flight; it was not retried")
	}
	if ans.Truncated {
		return errorResult(c, "response_too_large", "the answer was longer than the gateway keeps for a batch line")
	}
	body := json.RawMessage(ans.Body)
	if !json.Valid(body) {
		b, _ := json.Marshal(string(ans.Body))
		body = b
	}
	cid := c.CustomID
	out := outputLine{ID: newID("batch_req_"), CustomID: &cid,
		Response: &lineResponse{StatusCode: ans.Status, RequestID: ans.RequestID, Body: body}}
	b, _ := json.Marshal(out)
	return result{BatchID: c.BatchID, N: c.N, OK: ans.Status >= 200 && ans.Status < 300, Line: string(b)}
}

// batchKey returns the batch's key id and endpoint (cached per batch).
func (r *Runner) batchKey(ctx context.Context, id string) *record {
	if v, ok := r.keys.Load(id); ok {
		return v.(*record)
	}
	var rec record
	err := r.s.store.db.QueryRow(ctx, `SELECT key_id, endpoint FROM gateway_batches WHERE id = ?`, id).Scan(&rec.KeyID, &rec.Endpoint)
	if err != nil {
		return nil
	}
	r.keys.Store(id, &rec)
	r.cached.Add(1)
	return &rec
}

// outputLine is one line of a batch's output or error file (OpenAI's
// batch output format).
type outputLine struct {
	ID       string        `json:"id"`
	CustomID *string       `json:"custom_id"`
	Response *lineResponse `json:"response"`
	Error    *lineError    `json:"error"`
}

type lineResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

type lineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func errorLine(customID *string, code, msg string) string {
	b, _ := json.Marshal(outputLine{ID: newID("batch_req_"), CustomID: customID, Error: &lineError{Code: code, Message: msg}})
	return string(b)
}

func errorResult(c claimed, code, msg string) result {
	id := c.CustomID
	return result{BatchID: c.BatchID, N: c.N, Line: errorLine(&id, code, msg)}
}

// interrupted records the lines of stopped processes: running lines of
// other owners whose lease ran out.
func (r *Runner) interrupted(ctx context.Context) {
	now := r.now()
	stale, err := r.s.store.stale(ctx, r.owner, now, 1000)
	if err != nil {
		r.logErr(ctx, "finding interrupted lines", err)
		return
	}
	for _, c := range stale {
		id := c.CustomID
		line := errorLine(&id, "interrupted", "the process running this request stopped while it was in flight; it was not retried")
		if err := r.s.store.interrupt(ctx, c, line, now); err != nil {
			r.logErr(ctx, "recording an interrupted line", err)
		}
	}
}

// housekeep does the runner's periodic work: expiring batches, recording
// the lines of stopped processes, moving finished batches on, starting
// validations and finalizations, and listing batches with lines to run.
func (r *Runner) housekeep(ctx context.Context) {
	now := r.now()
	if _, err := r.s.store.expire(ctx, now); err != nil {
		r.logErr(ctx, "expiring", err)
	}
	if err := r.s.store.settle(ctx, now); err != nil {
		r.logErr(ctx, "settling", err)
	}
	r.dropped.Clear() // before the list is read: a later cancel stays marked
	if recs, err := r.s.store.inProgress(ctx, 64); err != nil {
		r.logErr(ctx, "listing batches", err)
	} else {
		r.queue = r.queue[:0]
		live := map[string]bool{}
		for _, rec := range recs {
			live[rec.ID] = true
		}
		var gone []claimed
		r.ready = slices.DeleteFunc(r.ready, func(c claimed) bool {
			if !live[c.BatchID] {
				gone = append(gone, c)
				return true
			}
			return false
		})
		if len(gone) > 0 {
			r.logErr(ctx, "giving back lines", r.s.store.unclaim(ctx, r.owner, gone))
		}
		if r.cached.Load() > 1024 {
			r.keys.Clear() // bounded: it is only a cache
			r.cached.Store(0)
		}
		for _, rec := range recs {
			r.queue = append(r.queue, rec.ID)
		}
	}
	until := now + r.cfg.Lease.Milliseconds()
	if r.busyVal.CompareAndSwap(false, true) {
		rec, ok, err := r.s.store.claimBatch(ctx, "('validating')", r.owner, now, until)
		if err != nil || !ok {
			r.logErr(ctx, "claiming a batch to validate", err)
			r.busyVal.Store(false)
		} else {
			r.phases.Add(1)
			go func() {
				defer r.phases.Done()
				defer r.busyVal.Store(false)
				r.validate(context.WithoutCancel(ctx), rec)
			}()
		}
	}
	if r.busyFin.CompareAndSwap(false, true) {
		rec, ok, err := r.s.store.claimBatch(ctx, "('finalizing','cancelling')", r.owner, now, until)
		if err != nil || !ok {
			r.logErr(ctx, "claiming a batch to finalize", err)
			r.busyFin.Store(false)
		} else {
			r.phases.Add(1)
			go func() {
				defer r.phases.Done()
				defer r.busyFin.Store(false)
				r.finalize(context.WithoutCancel(ctx), rec)
			}()
		}
	}
}

func (r *Runner) logErr(ctx context.Context, what string, err error) {
	if err != nil && ctx.Err() == nil {
		r.s.log.Warn("batches: "+what+" failed", "err", err)
	}
}

// inputLine is one line of a batch's input file.
type inputLine struct {
	CustomID *string         `json:"custom_id"`
	Method   string          `json:"method"`
	URL      *string         `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// validate reads rec's input file into lines: a line that is not a
// request of the batch's endpoint is an error line at once, the others
// are pending. A file over the caps fails the batch.
func (r *Runner) validate(ctx context.Context, rec record) {
	defer func() { _ = r.s.store.release(ctx, rec.ID, r.owner) }()
	fail := func(code, msg string) {
		errs := marshalErrors([]batchError{{Code: code, Message: msg}})
		if err := r.s.store.startLines(ctx, rec.ID, r.owner, 0, 0, errs, r.now()); err != nil {
			r.logErr(ctx, "failing a batch", err)
		}
	}
	f, err := r.s.files.Open(ctx, rec.KeyID, rec.InputFileID)
	if err != nil {
		fail("invalid_file", "the input file cannot be read: it was deleted or expired")
		return
	}
	defer f.Close()
	lim := r.s.limits
	br := bufio.NewReaderSize(io.LimitReader(f, lim.MaxInputBytes+1), 64<<10)
	var (
		chunk      []line
		chunkBytes int
		first      = true
		n, failed  int
		read       int64
	)
	flush := func() bool {
		ok, err := r.s.store.addLines(ctx, rec.ID, r.owner, chunk, first, r.now()+r.cfg.Lease.Milliseconds())
		if err != nil {
			r.logErr(ctx, "storing lines", err)
			return false
		}
		first, chunk, chunkBytes = false, chunk[:0], 0
		return ok
	}
	for {
		raw, size, tooLong, err := readLine(br, lim.MaxLineBytes)
		read += int64(size)
		if read > lim.MaxInputBytes {
			fail("file_too_large", "the input file is larger than the gateway's cap for batches")
			return
		}
		if len(bytes.TrimSpace(raw)) > 0 || tooLong {
			n++
			if n > lim.MaxLines {
				fail("too_many_requests", "the input file has more request lines than a batch may hold")
				return
			}
			l := parseLine(n, raw, tooLong, rec.Endpoint)
			if l.Done {
				failed++
			}
			chunk = append(chunk, l)
			chunkBytes += len(l.Request) + len(l.Result)
			if len(chunk) >= insertChunk || chunkBytes >= 4<<20 {
				if !flush() {
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fail("invalid_file", "the input file could not be read")
				return
			}
			break
		}
	}
	if n == 0 {
		fail("empty_file", "the input file has no request lines")
		return
	}
	if !flush() {
		return
	}
	if err := r.s.store.startLines(ctx, rec.ID, r.owner, n, failed, "", r.now()); err != nil {
		r.logErr(ctx, "starting a batch", err)
	}
	r.wake()
}

// readLine reads one line of at most max bytes; a longer one is read to
// its end and dropped (tooLong). size is the bytes read.
func readLine(br *bufio.Reader, max int) (raw []byte, size int, tooLong bool, err error) {
	var buf []byte
	for {
		part, err := br.ReadSlice('\n')
		size += len(part)
		if !tooLong {
			if len(buf)+len(part) > max+1 { // +1: the newline
				tooLong, buf = true, nil
			} else {
				buf = append(buf, part...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return buf, size, tooLong, err
	}
}

// parseLine checks input line n (1-based) of a batch of endpoint.
func parseLine(n int, raw []byte, tooLong bool, endpoint string) line {
	bad := func(customID *string, code, msg string) line {
		cid := ""
		if customID != nil {
			cid = *customID
		}
		return line{N: n, CustomID: cid, Done: true, Result: errorLine(customID, code, msg)}
	}
	if tooLong {
		return bad(nil, "line_too_large", "the line is longer than the gateway's cap for a batch request")
	}
	if !utf8.Valid(raw) {
		return bad(nil, "invalid_json_line", "the line is not UTF-8 JSON")
	}
	var in inputLine
	if err := json.Unmarshal(raw, &in); err != nil {
		return bad(nil, "invalid_json_line", "the line is not a JSON object: "+err.Error())
	}
	if in.CustomID == nil || *in.CustomID == "" || len(*in.CustomID) > maxCustomID {
		return bad(nil, "missing_custom_id", `the line has no "custom_id" (a string of at most 512 bytes)`)
	}
	switch {
	case in.URL == nil || *in.URL == "":
		return bad(in.CustomID, "missing_url", `the line has no "url"`)
	case *in.URL != endpoint:
		return bad(in.CustomID, "mismatched_endpoint", `the line's "url" is not the batch's endpoint `+endpoint)
	case in.Method != http.MethodPost:
		return bad(in.CustomID, "invalid_method", `the line's "method" must be POST`)
	}
	var lr lineRequest
	if len(in.Body) == 0 || in.Body[0] != '{' || json.Unmarshal(in.Body, &lr) != nil {
		return bad(in.CustomID, "invalid_body", `the line's "body" must be a JSON object`)
	}
	if lr.Stream {
		return bad(in.CustomID, "stream_unsupported", "batch requests cannot stream")
	}
	return line{N: n, CustomID: *in.CustomID, Request: string(in.Body)}
}

// finalize writes rec's output and error files once no line of it is in
// flight, and gives it its final status.
func (r *Runner) finalize(ctx context.Context, rec record) {
	defer func() { _ = r.s.store.release(ctx, rec.ID, r.owner) }()
	if n, err := r.s.store.running(ctx, rec.ID); err != nil || n > 0 {
		return // lines still in flight (or their lease not yet run out)
	}
	// The counts as they are now that no line is in flight.
	rec, err := r.s.store.get(ctx, rec.KeyID, rec.ID)
	if err != nil {
		r.logErr(ctx, "reading a batch", err)
		return
	}
	status := "completed"
	switch {
	case rec.Status == "cancelling":
		status = "cancelled"
	case rec.ExpiredAt != 0:
		status = "expired"
	}
	var outID, errID string
	var expired int
	if rec.Completed > 0 {
		outID, _, err = r.writeFile(ctx, rec, "output", func(yield func(string) bool) error {
			return r.eachResult(ctx, rec.ID, true, yield)
		})
		if err != nil {
			r.logErr(ctx, "writing an output file", err)
			return
		}
	}
	errID, lines, err := r.writeFile(ctx, rec, "error", func(yield func(string) bool) error {
		if err := r.eachResult(ctx, rec.ID, false, yield); err != nil {
			return err
		}
		if status != "expired" {
			return nil
		}
		// The lines the window ended before.
		after := 0
		for {
			ps, err := r.s.store.pending(ctx, rec.ID, after, 1000)
			if err != nil || len(ps) == 0 {
				return err
			}
			for _, p := range ps {
				expired++
				id := p.CustomID
				if !yield(errorLine(&id, "batch_expired", "This request could not be executed before the completion window expired.")) {
					return nil
				}
				after = p.N
			}
		}
	})
	if err != nil {
		r.logErr(ctx, "writing an error file", err)
		return
	}
	if lines == 0 {
		errID = "" // nothing failed: no error file
	}
	if err := r.s.store.finalize(ctx, rec.ID, r.owner, status, outID, errID, expired, r.now()); err != nil {
		r.logErr(ctx, "finalizing", err)
		return
	}
	r.s.events.Publish(ctx, events.Event{Type: events.BatchCompleted, At: r.s.clock.Now(), Data: BatchEvent{ID: rec.ID, KeyID: rec.KeyID,
		Status: status, Endpoint: rec.Endpoint, Total: rec.Total, Completed: rec.Completed, Failed: rec.Failed + expired,
		OutputFileID: outID, ErrorFileID: errID}})
}

// BatchEvent is the data of a batch.completed event.
type BatchEvent struct {
	ID           string `json:"id"`
	KeyID        string `json:"keyId"`
	Status       string `json:"status"` // completed, expired or cancelled
	Endpoint     string `json:"endpoint"`
	Total        int    `json:"total"`
	Completed    int    `json:"completed"`
	Failed       int    `json:"failed"`
	OutputFileID string `json:"outputFileId,omitempty"`
	ErrorFileID  string `json:"errorFileId,omitempty"`
}

// eachResult yields batch id's finished lines with ok, in line order.
func (r *Runner) eachResult(ctx context.Context, id string, ok bool, yield func(string) bool) error {
	after := 0
	for {
		rs, err := r.s.store.results(ctx, id, ok, after, 1000)
		if err != nil || len(rs) == 0 {
			return err
		}
		for _, res := range rs {
			if !yield(res.Line) {
				return nil
			}
			after = res.N
		}
	}
}

// writeFile stores the lines each yields as a JSONL file of rec's key,
// streamed (never whole in memory); it returns the file's id and how
// many lines it has. A file with no line is not stored.
func (r *Runner) writeFile(ctx context.Context, rec record, kind string, each func(yield func(string) bool) error) (string, int, error) {
	pr, pw := io.Pipe()
	var lines int
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(pw, 64<<10)
		var werr error
		err := each(func(l string) bool {
			lines++
			if _, werr = bw.WriteString(l); werr == nil {
				werr = bw.WriteByte('\n')
			}
			return werr == nil
		})
		if err == nil {
			err = werr
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	// Peek: a file without lines is not stored.
	br := bufio.NewReader(pr)
	if _, err := br.Peek(1); err != nil {
		pr.CloseWithError(io.ErrClosedPipe)
		<-done
		if errors.Is(err, io.EOF) {
			return "", 0, nil
		}
		return "", 0, err
	}
	id, err := r.s.files.Put(ctx, rec.KeyID, "batch_output", rec.ID+"_"+kind+".jsonl", br)
	pr.CloseWithError(io.ErrClosedPipe) // ends the writer if Put stopped reading early
	<-done
	return id, lines, err
}
