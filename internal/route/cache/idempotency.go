package cache

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/route/llm"
)

// Defaults of IdempotencyOptions.
const (
	DefaultWindow  = 5 * time.Second
	DefaultMaxWait = 2 * time.Minute
	DefaultMaxKeys = 100000
	DefaultLockTTL = 30 * time.Second
	DefaultPoll    = 20 * time.Millisecond
)

// IdempotencyOptions configure an Idempotency; zero fields take the defaults.
type IdempotencyOptions struct {
	Window  time.Duration // how long a completed answer is replayed
	MaxWait time.Duration // how long a duplicate waits for the running request
	MaxKeys int           // keys tracked in memory; beyond, requests run untracked
	// Redis, when set, coalesces across replicas: the leader holds a lock
	// (SET NX PX LockTTL, renewed while it runs) and stores the answer for
	// the window; the others poll for it every Poll.
	Redis   *redis.Client
	Prefix  string
	LockTTL time.Duration
	Poll    time.Duration
	Clock   clock.Clock
	Log     *slog.Logger
}

// Idempotency implements pipeline.Idempotency.
type Idempotency struct {
	opt IdempotencyOptions

	mu      sync.Mutex
	flights map[string]*flight
	sweepAt time.Time
}

// flight is one key: running (done open) or completed (resp, until expires).
type flight struct {
	done    chan struct{}
	resp    *llm.Response
	expires time.Time
}

// NewIdempotency returns an Idempotency with opt.
func NewIdempotency(opt IdempotencyOptions) *Idempotency {
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = DefaultMaxWait
	}
	if opt.MaxKeys <= 0 {
		opt.MaxKeys = DefaultMaxKeys
	}
	if opt.LockTTL <= 0 {
		opt.LockTTL = DefaultLockTTL
	}
	if opt.Poll <= 0 {
		opt.Poll = DefaultPoll
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Idempotency{opt: opt, flights: map[string]*flight{}}
}

// errInProgress answers a duplicate that waited MaxWait in vain.
var errInProgress = &llm.Error{Status: http.StatusConflict, Type: llm.ErrInvalidRequest,
	Message: "a request with this Idempotency-Key is still in progress; retry later"}

// Begin implements pipeline.Idempotency: it returns the answer of the request
// that ran under key (waiting while it runs), or makes the caller the
// leader that runs it.
func (i *Idempotency) Begin(ctx context.Context, key string) (*llm.Response, func(*llm.Response), error) {
	wctx, cancel := context.WithTimeout(ctx, i.opt.MaxWait)
	defer cancel()
	for {
		i.mu.Lock()
		now := i.opt.Clock.Now()
		i.sweep(now)
		f := i.flights[key]
		if f != nil && f.resp != nil {
			if now.Before(f.expires) {
				i.mu.Unlock()
				return clone(f.resp), nil, nil
			}
			delete(i.flights, key)
			f = nil
		}
		if f == nil {
			if len(i.flights) >= i.opt.MaxKeys {
				i.mu.Unlock()
				return nil, func(*llm.Response) {}, nil
			}
			f = &flight{done: make(chan struct{})}
			i.flights[key] = f
			i.mu.Unlock()
			return i.lead(wctx, ctx, key, f)
		}
		i.mu.Unlock()
		select {
		case <-f.done:
		case <-wctx.Done():
			return nil, nil, waitErr(ctx)
		}
	}
}

func waitErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return errInProgress
}

// finish completes f locally: with resp, it is replayed for the window;
// without, the key is free and one waiting caller becomes the leader.
func (i *Idempotency) finish(key string, f *flight, resp *llm.Response, expires time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if resp != nil {
		f.resp, f.expires = resp, expires
	} else if i.flights[key] == f {
		delete(i.flights, key)
	}
	close(f.done)
}

// sweep drops expired answers, at most twice per window.
func (i *Idempotency) sweep(now time.Time) {
	if now.Before(i.sweepAt) {
		return
	}
	i.sweepAt = now.Add(i.opt.Window / 2)
	for k, f := range i.flights {
		if f.resp != nil && !now.Before(f.expires) {
			delete(i.flights, k)
		}
	}
}

// lead runs as the local leader of key: alone, or, with Redis, after
// winning the replicas' lock (or finding their answer).
func (i *Idempotency) lead(wctx, ctx context.Context, key string, f *flight) (*llm.Response, func(*llm.Response), error) {
	var once sync.Once
	local := func(resp *llm.Response) {
		once.Do(func() { i.finish(key, f, clone(resp), i.opt.Clock.Now().Add(i.opt.Window)) })
	}
	if i.opt.Redis == nil {
		return nil, local, nil
	}
	resKey, lockKey := i.opt.Prefix+"idem:r:"+key, i.opt.Prefix+"idem:l:"+key
	token := auth.RandomToken("", 16)
	for {
		resp, ttl, won, err := i.tryLead(ctx, resKey, lockKey, token)
		if err == nil && resp != nil {
			once.Do(func() { i.finish(key, f, resp, i.opt.Clock.Now().Add(ttl)) })
			return clone(resp), nil, nil
		}
		if err != nil && ctx.Err() != nil {
			local(nil)
			return nil, nil, ctx.Err()
		}
		if err != nil {
			// Redis is unreachable: coalesce in this process only.
			i.opt.Log.Warn("idempotency: redis unavailable", slog.Any("err", err))
			return nil, local, nil
		}
		if won {
			stop := make(chan struct{})
			go i.renew(lockKey, token, stop)
			var committed sync.Once
			return nil, func(resp *llm.Response) {
				committed.Do(func() { i.remoteCommit(ctx, resKey, lockKey, token, resp, stop) })
				local(resp)
			}, nil
		}
		t := time.NewTimer(i.opt.Poll)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			local(nil) // let a local duplicate try in turn
			return nil, nil, waitErr(ctx)
		}
	}
}

// remoteCommit stores the leader's answer for the other replicas (none
// when it failed) and releases the lock.
func (i *Idempotency) remoteCommit(ctx context.Context, resKey, lockKey, token string, resp *llm.Response, stop chan struct{}) {
	close(stop)
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), tierTimeout)
	defer cancel()
	if resp != nil {
		if b, err := json.Marshal(resp); err == nil {
			if err := i.opt.Redis.Set(bg, resKey, b, i.opt.Window).Err(); err != nil {
				i.opt.Log.Warn("idempotency: store answer", slog.Any("err", err))
			}
		}
	}
	release.Run(bg, i.opt.Redis, []string{lockKey}, token)
}

// tryLead atomically either returns the answer another replica stored
// (with its remaining lifetime) or takes the lock (won); neither means
// another replica is running the request.
func (i *Idempotency) tryLead(ctx context.Context, resKey, lockKey, token string) (*llm.Response, time.Duration, bool, error) {
	v, err := acquire.Run(ctx, i.opt.Redis, []string{resKey, lockKey}, token, i.opt.LockTTL.Milliseconds()).Slice()
	if err != nil {
		return nil, 0, false, err
	}
	if len(v) == 3 {
		b, _ := v[1].(string)
		var r llm.Response
		if json.Unmarshal([]byte(b), &r) == nil {
			ttl := time.Duration(toInt(v[2])) * time.Millisecond
			if ttl <= 0 || ttl > i.opt.Window {
				ttl = i.opt.Window
			}
			return &r, ttl, false, nil
		}
		return nil, 0, false, nil // unreadable: wait for it to expire
	}
	return nil, 0, len(v) == 1 && toInt(v[0]) == 2, nil
}

func toInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// renew keeps the leader's lock alive until stop closes.
func (i *Idempotency) renew(lockKey, token string, stop <-chan struct{}) {
	t := time.NewTicker(i.opt.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), tierTimeout)
			extend.Run(ctx, i.opt.Redis, []string{lockKey}, token, i.opt.LockTTL.Milliseconds())
			cancel()
		}
	}
}

var (
	// acquire: KEYS[1] the answer, KEYS[2] the lock; ARGV token, ttl ms.
	acquire = redis.NewScript(`local r = redis.call("GET", KEYS[1])
if r then return {1, r, redis.call("PTTL", KEYS[1])} end
if redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[2]) then return {2} end
return {0}`)
	release = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	extend  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// ActiveKeys is the number of keys this process tracks (running or
// replayable).
func (i *Idempotency) ActiveKeys() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sweep(i.opt.Clock.Now())
	n := 0
	now := i.opt.Clock.Now()
	for _, f := range i.flights {
		if f.resp == nil || now.Before(f.expires) {
			n++
		}
	}
	return n
}

// Window is how long a completed answer is replayed.
func (i *Idempotency) Window() time.Duration { return i.opt.Window }

// Clear forgets every completed answer (running requests finish normally)
// and returns how many there were.
func (i *Idempotency) Clear(ctx context.Context) int {
	i.mu.Lock()
	n := 0
	for k, f := range i.flights {
		if f.resp != nil {
			delete(i.flights, k)
			n++
		}
	}
	i.mu.Unlock()
	if i.opt.Redis != nil {
		iter := i.opt.Redis.Scan(ctx, 0, i.opt.Prefix+"idem:r:*", 500).Iterator()
		for iter.Next(ctx) {
			i.opt.Redis.Del(ctx, iter.Val())
		}
	}
	return n
}

// clone returns a copy of r that shares no slices with it.
func clone(r *llm.Response) *llm.Response {
	if r == nil {
		return nil
	}
	c := *r
	c.Content = append([]llm.Part(nil), r.Content...)
	return &c
}
