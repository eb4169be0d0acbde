package netevents

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/platform/testenv"
)

type bus interface {
	Publish(ctx context.Context, networkID string) error
	Subscribe(f func(networkID string))
	Run(ctx context.Context) error
	Ready() bool
}

// recorder collects delivered ids.
type recorder struct {
	mu  sync.Mutex
	ids []string
}

func (r *recorder) add(id string) { r.mu.Lock(); r.ids = append(r.ids, id); r.mu.Unlock() }

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// open returns two buses as two replicas see them (one for Memory).
var impls = map[string]func(t *testing.T) (a, b bus){
	"memory": func(*testing.T) (bus, bus) { m := NewMemory(); return m, m },
	"redis": func(t *testing.T) (bus, bus) {
		c1, prefix := testenv.Redis(t)
		c2 := redis.NewClient(c1.Options())
		t.Cleanup(func() { c2.Close() })
		return NewRedis(c1, prefix), NewRedis(c2, prefix)
	},
}

// A notice published on one replica reaches the subscribers of both, in
// order; oversized ids are not delivered.
func TestConformance(t *testing.T) {
	for name, open := range impls {
		t.Run(name, func(t *testing.T) {
			a, b := open(t)
			ra, rb := &recorder{}, &recorder{}
			a.Subscribe(ra.add)
			if b != a {
				b.Subscribe(rb.add)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for _, x := range []bus{a, b} {
				go x.Run(ctx)
			}
			testenv.EventuallyWithin(t, "both buses subscribed", 5*time.Second, func() bool { return a.Ready() && b.Ready() })
			for _, id := range []string{"vn_one", string(make([]byte, 65)), "vn_two"} {
				if err := a.Publish(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			want := []string{"vn_one", "vn_two"}
			for _, r := range []*recorder{ra, rb} {
				if b == a && r == rb {
					continue
				}
				testenv.Poll(5*time.Second, func() bool { return len(r.got()) >= 2 })
				if got := r.got(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
					t.Errorf("delivered %q, want %q", got, want)
				}
			}
		})
	}
}

// Without Redis a notice is still delivered to this process.
func TestRedisDownDeliversLocally(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	r := NewRedis(c, "x:")
	rec := &recorder{}
	r.Subscribe(rec.add)
	if err := r.Publish(context.Background(), "vn_down"); err == nil {
		t.Fatal("published to a Redis that is not there")
	}
	if got := rec.got(); len(got) != 1 || got[0] != "vn_down" {
		t.Fatalf("delivered %q", got)
	}
}

// Every (re)subscription of the Redis bus tells the SubscribeAll
// functions (the nucleus then reloads every network, since notices sent
// while the subscription was down are lost).
func TestRedisResubscribeTellsSubscribeAll(t *testing.T) {
	c, prefix := testenv.Redis(t)
	fc, name := testenv.NamedRedis(t, prefix, "netevents")
	r := NewRedis(fc, prefix)
	var alls atomic.Int32
	r.SubscribeAll(func() { alls.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	testenv.Eventually(t, "first subscription", func() bool { return r.Ready() && alls.Load() == 1 })

	testenv.KillRedisClients(t, c, name)
	testenv.Eventually(t, "the resubscription reported", func() bool { return alls.Load() >= 2 })
}
