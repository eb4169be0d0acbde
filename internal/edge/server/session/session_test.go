package session

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// short is the lifetime of sessions in expiry tests: real time for Redis,
// whose keys expire by Redis's clock.
const short = 300 * time.Millisecond

// env is one store as seen from two replicas (the same instance for
// Memory) with the means to let time pass for it.
type env struct {
	a, b   control.SessionStore
	now    func() time.Time
	expire func() // lets short elapse for the store
}

type impl struct {
	name string
	open func(t *testing.T) *env
}

// testLimits are the caps of the conformance stores.
var testLimits = Limits{PerIP: 3, Total: 5}

var impls = []impl{
	{"memory", func(*testing.T) *env {
		clk := clock.NewFake(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
		m := NewMemoryLimited(clk, testLimits)
		return &env{a: m, b: m, now: clk.Now, expire: func() { clk.Advance(short) }}
	}},
	{"redis", func(t *testing.T) *env {
		c1, prefix := testenv.Redis(t)
		c2 := redis.NewClient(c1.Options()) // a second replica's connection pool
		t.Cleanup(func() { c2.Close() })
		return &env{
			a:      NewRedisLimited(c1, prefix, clock.Real{}, testLimits),
			b:      NewRedisLimited(c2, prefix, clock.Real{}, testLimits),
			now:    time.Now,
			expire: func() { time.Sleep(short + 100*time.Millisecond) },
		}
	}},
}

var conformance = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"Lifecycle", testLifecycle},
	{"CompleteBeforeWait", testCompleteBeforeWait},
	{"ConcurrentWaiters", testConcurrentWaiters},
	{"CompleteRacesWait", testCompleteRacesWait},
	{"CompleteTwice", testCompleteTwice},
	{"Unknown", testUnknown},
	{"Expiry", testExpiry},
	{"ExpiryWhileWaiting", testExpiryWhileWaiting},
	{"WaitCancel", testWaitCancel},
	{"OneWaiter", testOneWaiter},
	{"Caps", testCaps},
	{"PendingRequest", testPendingRequest},
}

func TestConformance(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					tc.fn(t, im.open(t))
				})
			}
		})
	}
}

var tokens = control.TokenPair{Token: "tok", RefreshToken: "ref", ExpiresIn: 15 * time.Minute}

func create(t *testing.T, s control.SessionStore, id string, expires time.Time) {
	t.Helper()
	if err := s.Create(context.Background(), id, control.LoginRequest{Expires: expires}); err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
}

func wantPending(t *testing.T, s control.SessionStore, id string, want bool) {
	t.Helper()
	_, got, err := s.Pending(context.Background(), id)
	if err != nil || got != want {
		t.Fatalf("Pending(%s) = %v, %v; want %v", id, got, err, want)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

type result struct {
	t   control.TokenPair
	err error
}

// waitAsync starts Wait with a safety timeout.
func waitAsync(s control.SessionStore, id string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tp, err := s.Wait(ctx, id)
		ch <- result{tp, err}
	}()
	return ch
}

func waitNow(t *testing.T, s control.SessionStore, id string) (control.TokenPair, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Wait(ctx, id)
}

func testLifecycle(t *testing.T, e *env) {
	ctx := context.Background()
	create(t, e.a, "s1", e.now().Add(time.Minute))
	wantErr(t, "Create twice", e.b.Create(ctx, "s1", control.LoginRequest{Expires: e.now().Add(time.Minute)}), control.ErrConflict)
	wantPending(t, e.a, "s1", true)
	wantPending(t, e.b, "s1", true)

	got := waitAsync(e.b, "s1")
	time.Sleep(50 * time.Millisecond) // let Wait block
	select {
	case r := <-got:
		t.Fatalf("Wait returned before Complete: %+v", r)
	default:
	}
	if err := e.a.Complete(ctx, "s1", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	r := <-got
	if r.err != nil || r.t != tokens {
		t.Fatalf("Wait = %+v, %v; want %+v", r.t, r.err, tokens)
	}
	// Delivered: gone for everyone.
	wantPending(t, e.a, "s1", false)
	_, err := waitNow(t, e.a, "s1")
	wantErr(t, "Wait after delivery", err, control.ErrNotFound)
	wantErr(t, "Complete after delivery", e.a.Complete(ctx, "s1", tokens), control.ErrNotFound)
}

func testCompleteBeforeWait(t *testing.T, e *env) {
	create(t, e.a, "s1", e.now().Add(time.Minute))
	if err := e.a.Complete(context.Background(), "s1", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantPending(t, e.b, "s1", false)
	tp, err := waitNow(t, e.b, "s1")
	if err != nil || tp != tokens {
		t.Fatalf("Wait = %+v, %v; want %+v", tp, err, tokens)
	}
	_, err = waitNow(t, e.a, "s1")
	wantErr(t, "second Wait", err, control.ErrNotFound)
}

func testConcurrentWaiters(t *testing.T, e *env) {
	create(t, e.a, "s1", e.now().Add(time.Minute))
	const waiters = 6
	var chans []<-chan result
	for i := range waiters {
		s := e.a
		if i%2 == 1 {
			s = e.b
		}
		chans = append(chans, waitAsync(s, "s1"))
	}
	time.Sleep(50 * time.Millisecond)
	if err := e.b.Complete(context.Background(), "s1", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	ok := 0
	for _, ch := range chans {
		r := <-ch
		switch {
		case r.err == nil && r.t == tokens:
			ok++
		case errors.Is(r.err, control.ErrNotFound), errors.Is(r.err, control.ErrConflict):
			// Another waiter held the session, or it was delivered.
		default:
			t.Errorf("Wait = %+v, %v", r.t, r.err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d waiters got the tokens, want exactly 1", ok)
	}
}

// testCompleteRacesWait completes sessions while a waiter on the other
// replica is starting, to catch a completion slipping between the first
// look and the subscription.
func testCompleteRacesWait(t *testing.T, e *env) {
	for i := range 30 {
		id := "race-" + strconv.Itoa(i)
		create(t, e.a, id, e.now().Add(time.Minute))
		got := waitAsync(e.b, id)
		if i%3 != 0 {
			time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
		}
		if err := e.a.Complete(context.Background(), id, tokens); err != nil {
			t.Fatalf("Complete(%s): %v", id, err)
		}
		start := time.Now()
		if r := <-got; r.err != nil || r.t != tokens {
			t.Fatalf("Wait(%s) = %+v, %v", id, r.t, r.err)
		}
		// A missed completion would only be found by Redis's fallback poll.
		if d := time.Since(start); d > pollEvery/2 {
			t.Fatalf("Wait(%s) returned %v after Complete", id, d)
		}
	}
}

func testCompleteTwice(t *testing.T, e *env) {
	ctx := context.Background()
	create(t, e.a, "s1", e.now().Add(time.Minute))
	if err := e.a.Complete(ctx, "s1", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	other := control.TokenPair{Token: "other", RefreshToken: "other"}
	wantErr(t, "Complete twice", e.b.Complete(ctx, "s1", other), control.ErrConflict)
	tp, err := waitNow(t, e.b, "s1")
	if err != nil || tp != tokens {
		t.Fatalf("Wait = %+v, %v; want the first tokens %+v", tp, err, tokens)
	}
}

func testUnknown(t *testing.T, e *env) {
	wantPending(t, e.a, "nope", false)
	wantErr(t, "Complete", e.a.Complete(context.Background(), "nope", tokens), control.ErrNotFound)
	_, err := waitNow(t, e.a, "nope")
	wantErr(t, "Wait", err, control.ErrNotFound)
}

func testExpiry(t *testing.T, e *env) {
	ctx := context.Background()
	create(t, e.a, "s1", e.now().Add(short))
	create(t, e.a, "done", e.now().Add(short))
	if err := e.a.Complete(ctx, "done", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantPending(t, e.b, "s1", true)
	e.expire()

	wantPending(t, e.b, "s1", false)
	wantErr(t, "Complete expired", e.b.Complete(ctx, "s1", tokens), control.ErrNotFound)
	_, err := waitNow(t, e.b, "s1")
	wantErr(t, "Wait expired", err, control.ErrNotFound)
	_, err = waitNow(t, e.b, "done")
	wantErr(t, "Wait on expired completed session", err, control.ErrNotFound)

	// The id is free again.
	create(t, e.a, "s1", e.now().Add(time.Minute))
	wantPending(t, e.b, "s1", true)
}

// testExpiryWhileWaiting lets a pending session expire under a waiter.
// Both implementations time the wait in real time from the remaining
// lifetime, so nothing needs advancing.
func testExpiryWhileWaiting(t *testing.T, e *env) {
	create(t, e.a, "s1", e.now().Add(short))
	start := time.Now()
	_, err := waitNow(t, e.b, "s1")
	wantErr(t, "Wait", err, control.ErrNotFound)
	if d := time.Since(start); d < short-50*time.Millisecond {
		t.Fatalf("Wait gave up after %v, before the session expired (%v)", d, short)
	}
}

func testWaitCancel(t *testing.T, e *env) {
	create(t, e.a, "s1", e.now().Add(time.Minute))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.b.Wait(ctx, "s1")
	wantErr(t, "Wait with canceled ctx", err, context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = e.b.Wait(ctx, "s1")
	wantErr(t, "Wait past deadline", err, context.DeadlineExceeded)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Wait took %v to notice its deadline", d)
	}

	// The session survives the abandoned waits.
	wantPending(t, e.a, "s1", true)
	if err := e.a.Complete(context.Background(), "s1", tokens); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if tp, err := waitNow(t, e.b, "s1"); err != nil || tp != tokens {
		t.Fatalf("Wait = %+v, %v", tp, err)
	}
}

// TestRedisCrossInstance runs Wait on one replica and Complete on another,
// each with its own client, as two processes would.
func TestRedisCrossInstance(t *testing.T) {
	c1, prefix := testenv.Redis(t)
	opt := *c1.Options()
	c2 := redis.NewClient(&opt)
	defer c2.Close()
	r1 := NewRedis(c1, prefix, clock.Real{})
	r2 := NewRedis(c2, prefix, clock.Real{})
	ctx := context.Background()

	if err := r1.Create(ctx, "x", control.LoginRequest{Expires: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	got := waitAsync(r2, "x")
	// Complete once r2's waiter has joined the confirmed subscription, so
	// only Pub/Sub (not the first take, not the fallback poll) can wake it.
	testenv.Eventually(t, "r2 waiting on its subscription", func() bool { return r2.hub.listening("x") })
	start := time.Now()
	if err := r1.Complete(ctx, "x", tokens); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.t != tokens {
		t.Fatalf("Wait on r2 = %+v, %v", r.t, r.err)
	}
	// Woken by Pub/Sub, not by the fallback poll.
	if d := time.Since(start); d > pollEvery/2 {
		t.Fatalf("Wait woke %v after Complete", d)
	}
	if _, err := r1.Wait(ctx, "x"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("Wait on r1 after delivery: %v, want ErrNotFound", err)
	}
	// Nothing is left behind.
	n, err := c1.Exists(ctx, prefix+"s:x").Result()
	if err != nil || n != 0 {
		t.Fatalf("session key left: %d, %v", n, err)
	}
}

// TestRedisExpiryKept checks that completing a session keeps its expiry.
func TestRedisExpiryKept(t *testing.T) {
	c, prefix := testenv.Redis(t)
	r := NewRedis(c, prefix, clock.Real{})
	ctx := context.Background()
	if err := r.Create(ctx, "x", control.LoginRequest{Expires: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Complete(ctx, "x", tokens); err != nil {
		t.Fatal(err)
	}
	pttl, err := c.PTTL(ctx, prefix+"s:x").Result()
	if err != nil || pttl <= 0 || pttl > time.Minute {
		t.Fatalf("PTTL after Complete = %v, %v; want in (0, 1m]", pttl, err)
	}
}

// TestRedisCreateExpired: a session created already expired is not stored
// but still conflicts with a live one.
func TestRedisCreateExpired(t *testing.T) {
	c, prefix := testenv.Redis(t)
	r := NewRedis(c, prefix, clock.Real{})
	ctx := context.Background()
	if err := r.Create(ctx, "x", control.LoginRequest{Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	wantPending(t, r, "x", false)
	create(t, r, "y", time.Now().Add(time.Minute))
	wantErr(t, "Create expired over live", r.Create(ctx, "y", control.LoginRequest{Expires: time.Now().Add(-time.Second)}), control.ErrConflict)
}

// TestRedisWaitersStress has many waiters on both replicas for many
// sessions; each session must be delivered exactly once.
func TestRedisWaitersStress(t *testing.T) {
	c1, prefix := testenv.Redis(t)
	c2 := redis.NewClient(c1.Options())
	defer c2.Close()
	stores := []control.SessionStore{NewRedis(c1, prefix, clock.Real{}), NewRedis(c2, prefix, clock.Real{})}
	ctx := context.Background()
	const sessions, perSession = 20, 4
	var wg sync.WaitGroup
	delivered := make([]int, sessions)
	var mu sync.Mutex
	for i := range sessions {
		id := "s" + strconv.Itoa(i)
		if err := stores[0].Create(ctx, id, control.LoginRequest{Expires: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		for w := range perSession {
			wg.Go(func() {
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				tp, err := stores[w%2].Wait(wctx, id)
				switch {
				case err == nil && tp == tokens:
					mu.Lock()
					delivered[i]++
					mu.Unlock()
				case errors.Is(err, control.ErrNotFound), errors.Is(err, control.ErrConflict):
				default:
					t.Errorf("Wait(%s) = %+v, %v", id, tp, err)
				}
			})
		}
		wg.Go(func() {
			if err := stores[(i+1)%2].Complete(ctx, id, tokens); err != nil {
				t.Errorf("Complete(%s): %v", id, err)
			}
		})
	}
	wg.Wait()
	for i, n := range delivered {
		if n != 1 {
			t.Errorf("session %d delivered %d times", i, n)
		}
	}
}

// testOneWaiter: while one client waits, a second is refused; once the
// first gives up the session can be waited on again.
func testOneWaiter(t *testing.T, e *env) {
	create(t, e.a, "s1", e.now().Add(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		for {
			// The probes below may hold the session for a moment.
			_, err := e.a.Wait(ctx, "s1")
			if !errors.Is(err, control.ErrConflict) {
				first <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := waitNowFor(e.b, "s1", 20*time.Millisecond)
		if errors.Is(err, control.ErrConflict) {
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			t.Fatalf("second Wait = %v, want ErrConflict while the first waits", err)
		}
		time.Sleep(10 * time.Millisecond) // the probe held it: let the first in
	}
	cancel()
	wantErr(t, "first Wait", <-first, context.Canceled)
	got := waitAsync(e.b, "s1")
	time.Sleep(50 * time.Millisecond)
	if err := e.a.Complete(context.Background(), "s1", tokens); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.t != tokens {
		t.Fatalf("Wait after the first left = %+v, %v", r.t, r.err)
	}
}

func waitNowFor(s control.SessionStore, id string, d time.Duration) (control.TokenPair, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Wait(ctx, id)
}

// testCaps: live sessions are capped per client IP and in all (the env's
// stores allow 3 per IP and 5 in all); delivery and expiry free places.
func testCaps(t *testing.T, e *env) {
	ctx := context.Background()
	req := func(ip string, d time.Duration) control.LoginRequest {
		return control.LoginRequest{ClientIP: ip, Expires: e.now().Add(d)}
	}
	for i := range 3 {
		if err := e.a.Create(ctx, "a"+strconv.Itoa(i), req("192.0.2.1", short)); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "fourth from one IP", e.b.Create(ctx, "a3", req("192.0.2.1", time.Minute)), control.ErrLimit)
	for i := range 2 {
		if err := e.b.Create(ctx, "b"+strconv.Itoa(i), req("192.0.2."+strconv.Itoa(10+i), time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, "sixth in all", e.a.Create(ctx, "c0", req("192.0.2.20", time.Minute)), control.ErrLimit)
	// Delivery frees a place.
	if err := e.a.Complete(ctx, "b0", tokens); err != nil {
		t.Fatal(err)
	}
	if _, err := waitNow(t, e.b, "b0"); err != nil {
		t.Fatal(err)
	}
	create(t, e.a, "c0", e.now().Add(time.Minute))
	wantErr(t, "sixth in all again", e.a.Create(ctx, "c1", req("192.0.2.21", time.Minute)), control.ErrLimit)
	// Expiry frees the IP's places.
	e.expire()
	if err := e.b.Create(ctx, "a4", req("192.0.2.1", time.Minute)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func testPendingRequest(t *testing.T, e *env) {
	want := control.LoginRequest{ClientIP: "2001:db8::7", UserAgent: "omni-edge/1.0 (linux)", Code: "ABCD-EFGH", Expires: e.now().Add(time.Minute).Truncate(time.Millisecond)}
	if err := e.a.Create(context.Background(), "s1", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := e.b.Pending(context.Background(), "s1")
	if err != nil || !ok || got.ClientIP != want.ClientIP || got.UserAgent != want.UserAgent || got.Code != want.Code || !got.Expires.Equal(want.Expires) {
		t.Fatalf("Pending = %+v, %v, %v; want %+v", got, ok, err, want)
	}
}
