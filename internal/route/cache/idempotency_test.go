package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/cache"
	"github.com/omniedge/omni/internal/route/llm"
)

// race runs n callers of Begin on the instances (round robin); each
// leader waits hold, then commits what answer returns for it (nil: a
// failure). It returns the replays seen and how many led.
func race(t *testing.T, n int, hold time.Duration, answer func(lead int) *llm.Response, idems ...*cache.Idempotency) (replays []string, leads int) {
	t.Helper()
	var mu sync.Mutex
	var led atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			replay, commit, err := idems[i%len(idems)].Begin(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			if replay != nil {
				mu.Lock()
				replays = append(replays, replay.Text())
				mu.Unlock()
				return
			}
			l := int(led.Add(1))
			time.Sleep(hold)
			r := answer(l)
			commit(r)
			if r != nil {
				mu.Lock()
				replays = append(replays, r.Text()) // the leader's own answer
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return replays, int(led.Load())
}

func checkCoalesced(t *testing.T, idems ...*cache.Idempotency) {
	t.Helper()
	// Everyone gets the one leader's answer.
	replays, leads := race(t, 20, 100*time.Millisecond, func(l int) *llm.Response { return answer(fmt.Sprint("lead", l)) }, idems...)
	if leads != 1 || len(replays) != 20 {
		t.Fatalf("%d leaders, %d answers", leads, len(replays))
	}
	for _, r := range replays {
		if r != "lead1" {
			t.Fatalf("answers %q", replays)
		}
	}
}

func checkFailedLeaderHandsOver(t *testing.T, key string, idems ...*cache.Idempotency) {
	t.Helper()
	// The first leader fails; exactly one waiting caller leads next and
	// the rest get its answer.
	var mu sync.Mutex
	var leads []int
	var wg sync.WaitGroup
	answers := make([]string, 10)
	for i := range 10 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			replay, commit, err := idems[i%len(idems)].Begin(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			if replay != nil {
				answers[i] = replay.Text()
				return
			}
			mu.Lock()
			leads = append(leads, i)
			n := len(leads)
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			if n == 1 {
				commit(nil)
				answers[i] = "failed"
				return
			}
			commit(answer("second"))
			answers[i] = "second"
		})
	}
	wg.Wait()
	failed, second := 0, 0
	for _, a := range answers {
		switch a {
		case "failed":
			failed++
		case "second":
			second++
		}
	}
	if len(leads) != 2 || failed != 1 || second != 9 {
		t.Fatalf("leaders %v, answers %q", leads, answers)
	}
}

func TestIdempotencyCoalescesInProcess(t *testing.T) {
	checkCoalesced(t, cache.NewIdempotency(cache.IdempotencyOptions{}))
	checkFailedLeaderHandsOver(t, "f", cache.NewIdempotency(cache.IdempotencyOptions{}))
}

func TestIdempotencyCoalescesOverRedis(t *testing.T) {
	rc, prefix := testenv.Redis(t)
	opt := cache.IdempotencyOptions{Redis: rc, Prefix: prefix, Poll: 5 * time.Millisecond}
	a, b := cache.NewIdempotency(opt), cache.NewIdempotency(opt)
	checkCoalesced(t, a, b)
	checkFailedLeaderHandsOver(t, "f", a, b)
	// The answer is shared for the window: a third replica replays it.
	c := cache.NewIdempotency(opt)
	r, _, err := c.Begin(context.Background(), "k")
	if err != nil || r == nil || r.Text() != "lead1" {
		t.Fatalf("third replica: %v %v", r, err)
	}
}

func TestIdempotencyWindowAndBounds(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(t0)
	i := cache.NewIdempotency(cache.IdempotencyOptions{Window: 5 * time.Second, MaxKeys: 3, Clock: clk})
	for n := range 3 {
		_, commit, err := i.Begin(ctx, fmt.Sprint("k", n))
		if err != nil || commit == nil {
			t.Fatal(err)
		}
		commit(answer(fmt.Sprint(n)))
	}
	if r, _, _ := i.Begin(ctx, "k1"); r == nil || r.Text() != "1" {
		t.Fatalf("replay %v", r)
	}
	// Full: a new key runs untracked.
	r, commit, err := i.Begin(ctx, "k9")
	if r != nil || commit == nil || err != nil {
		t.Fatal("an untracked key did not run")
	}
	commit(answer("9"))
	if r, _, _ := i.Begin(ctx, "k9"); r != nil {
		t.Fatal("an untracked key was replayed")
	}
	if n := i.ActiveKeys(); n != 3 {
		t.Fatalf("active keys %d", n)
	}
	// After the window everything is gone: memory stays bounded.
	clk.Advance(5 * time.Second)
	if n := i.ActiveKeys(); n != 0 {
		t.Fatalf("active keys after the window %d", n)
	}
	if r, commit, _ := i.Begin(ctx, "k1"); r != nil || commit == nil {
		t.Fatal("replayed after the window")
	}
}

func TestIdempotencyWaitIsBounded(t *testing.T) {
	i := cache.NewIdempotency(cache.IdempotencyOptions{MaxWait: 50 * time.Millisecond})
	_, commit, _ := i.Begin(context.Background(), "slow")
	defer commit(nil)
	_, _, err := i.Begin(context.Background(), "slow")
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != http.StatusConflict {
		t.Fatalf("waited in vain: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := i.Begin(ctx, "slow"); !errors.Is(err, context.Canceled) {
		t.Fatalf("gone client: %v", err)
	}
}
