package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/events"
)

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

var masterKey = []byte("0123456789abcdef0123456789abcdef")

func openDB(t testing.TB, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqldb.Migrate(context.Background(), db, Product, Migrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

// receiver is a webhook endpoint that verifies every message with the
// Standard Webhooks library and answers with the status set.
type receiver struct {
	*httptest.Server
	t      testing.TB
	mu     sync.Mutex
	status int
	wh     *standardwebhooks.Webhook
	got    []received
}

type received struct {
	ID, Type string
	Data     map[string]any
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t, status: http.StatusOK}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [1 << 16]byte
		n, _ := r.Body.Read(body[:])
		for n < len(body) {
			m, err := r.Body.Read(body[n:])
			n += m
			if err != nil {
				break
			}
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.wh != nil {
			// The fake clock is far from now: the signature is checked,
			// the timestamp's freshness is not.
			if err := rc.wh.VerifyIgnoringTimestamp(body[:n], r.Header); err != nil {
				t.Errorf("signature of %s does not verify: %v", r.Header.Get("webhook-id"), err)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		var p struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body[:n], &p); err != nil {
			t.Errorf("body %q: %v", body[:n], err)
		}
		rc.got = append(rc.got, received{ID: r.Header.Get("webhook-id"), Type: p.Type, Data: p.Data})
		w.WriteHeader(rc.status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) setSecret(secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.mu.Lock()
	rc.wh = wh
	rc.mu.Unlock()
}

func (rc *receiver) setStatus(s int) { rc.mu.Lock(); rc.status = s; rc.mu.Unlock() }

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// node is one gateway's webhooks module over db, its management routes
// behind an httptest server (no login: the guard is route/admin's).
type node struct {
	s      *Service
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t testing.TB, db *sqldb.DB, clk clock.Clock) *node {
	t.Helper()
	s, err := New(Options{DB: db, MasterKey: masterKey, Clock: clk, Poll: 5 * time.Millisecond, Reload: 20 * time.Millisecond,
		Lease: 10 * time.Second, Jitter: func() float64 { return 1 }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	n := &node{s: s, srv: httptest.NewServer(mux), done: make(chan struct{})}
	t.Cleanup(n.srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { defer close(n.done); _ = s.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func (n *node) do(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, n.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func dialects(t *testing.T, run func(t *testing.T, dsn func() string)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "omni.db")
		run(t, func() string { return path })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.Postgres(t)
		run(t, func() string { return dsn })
	})
}

// A failing endpoint is retried on the schedule (5 s, then 30 s …, by
// the fake clock), and after the gateway restarts on the same database
// the retry still happens at its time; once the endpoint answers 2xx the
// delivery is delivered and the list of deliveries says so.
func TestRetryScheduleSurvivesRestart(t *testing.T) {
	dialects(t, func(t *testing.T, dsn func() string) {
		clk := clock.NewFake(t0)
		db := openDB(t, dsn())
		rc := newReceiver(t)
		rc.setStatus(http.StatusInternalServerError)
		n := startNode(t, db, clk)
		st, hook := n.do(t, "POST", "/api/webhooks", map[string]any{"url": rc.URL + "/hook", "events": []string{"key.created"}})
		if st != http.StatusCreated {
			t.Fatalf("create: %d %v", st, hook)
		}
		rc.setSecret(hook["secret"].(string))
		id := hook["id"].(string)

		n.s.Publish(context.Background(), events.Event{Type: events.KeyCreated, Data: map[string]string{"id": "key_1"}})
		n.s.Publish(context.Background(), events.Event{Type: events.KeyRevoked, Data: map[string]string{"id": "key_1"}}) // not subscribed
		testenv.Eventually(t, "the first attempt", func() bool { return len(rc.received()) == 1 })
		attempts := func(n *node) map[string]any {
			st, out := n.do(t, "GET", "/api/webhooks/"+id+"/deliveries", nil)
			if st != http.StatusOK {
				t.Fatalf("deliveries: %d %v", st, out)
			}
			data := out["data"].([]any)
			if len(data) != 1 {
				t.Fatalf("deliveries: %v", out)
			}
			return data[0].(map[string]any)
		}
		testenv.Eventually(t, "the first failure recorded", func() bool { return attempts(n)["attempts"] == 1.0 })
		d := attempts(n)
		if d["status"] != "pending" || d["lastStatus"] != 500.0 || !strings.Contains(d["lastError"].(string), "500") ||
			d["nextAttemptAt"] != t0.Add(5*time.Second).Format(time.RFC3339) {
			t.Fatalf("after one failure: %v", d)
		}

		clk.Advance(4 * time.Second)
		time.Sleep(50 * time.Millisecond) // ten polls: nothing is due yet
		if got := len(rc.received()); got != 1 {
			t.Fatalf("%d attempts before the retry was due", got)
		}
		clk.Advance(time.Second)
		testenv.Eventually(t, "the retry after 5 s", func() bool { return len(rc.received()) == 2 })
		testenv.Eventually(t, "the second failure recorded", func() bool { return attempts(n)["attempts"] == 2.0 })

		// Restart: the next retry, 30 s later, is the new process's.
		n.stop()
		db.Close()
		db = openDB(t, dsn())
		n = startNode(t, db, clk)
		clk.Advance(29 * time.Second)
		time.Sleep(50 * time.Millisecond)
		if got := len(rc.received()); got != 2 {
			t.Fatalf("%d attempts before the second retry was due", got)
		}
		rc.setStatus(http.StatusNoContent)
		clk.Advance(time.Second)
		testenv.Eventually(t, "the retry after the restart", func() bool { return len(rc.received()) == 3 })
		testenv.Eventually(t, "delivered", func() bool { return attempts(n)["status"] == "delivered" })
		got := rc.received()
		if got[0].ID != got[2].ID || got[2].Type != events.KeyCreated || got[2].Data["id"] != "key_1" {
			t.Fatalf("received %+v", got)
		}
	})
}

// A delivery that fails every time is given up after the last retry
// (about a day later).
func TestGivenUpAfterTheSchedule(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	rc := newReceiver(t)
	rc.setStatus(http.StatusBadGateway)
	n := startNode(t, db, clk)
	_, hook := n.do(t, "POST", "/api/webhooks", map[string]any{"url": rc.URL})
	id := hook["id"].(string)
	n.s.Publish(context.Background(), events.Event{Type: events.ProviderDown, Data: map[string]string{"provider": "p"}})
	var total time.Duration
	for i := range len(Schedule) + 1 {
		testenv.Eventually(t, fmt.Sprintf("attempt %d", i+1), func() bool { return len(rc.received()) == i+1 })
		if i < len(Schedule) {
			// the attempt's outcome is recorded before the clock moves on
			testenv.Eventually(t, "recorded", func() bool {
				_, out := n.do(t, "GET", "/api/webhooks/"+id+"/deliveries", nil)
				return out["data"].([]any)[0].(map[string]any)["attempts"] == float64(i+1)
			})
			clk.Advance(Schedule[i])
			total += Schedule[i]
		}
	}
	testenv.Eventually(t, "failed", func() bool {
		_, out := n.do(t, "GET", "/api/webhooks/"+id+"/deliveries", nil)
		d := out["data"].([]any)[0].(map[string]any)
		return d["status"] == "failed" && d["nextAttemptAt"] == nil
	})
	if total < 20*time.Hour || total > 26*time.Hour {
		t.Fatalf("the schedule spans %s, want about a day", total)
	}
}

// Two gateways on one database deliver every event once: a delivery is
// claimed under a lease by one of them.
func TestTwoReplicasDeliverOnce(t *testing.T) {
	dialects(t, func(t *testing.T, dsn func() string) {
		clk := clock.Real{}
		db1, db2 := openDB(t, dsn()), openDB(t, dsn())
		rc := newReceiver(t)
		a := startNode(t, db1, clk)
		_, hook := a.do(t, "POST", "/api/webhooks", map[string]any{"url": rc.URL, "events": []string{"*"}})
		rc.setSecret(hook["secret"].(string))
		b := startNode(t, db2, clk)
		const n = 60
		for i := range n {
			p := a.s
			if i%2 == 1 {
				p = b.s
			}
			p.Publish(context.Background(), events.Event{Type: events.BatchCompleted, Data: map[string]int{"i": i}})
		}
		testenv.Eventually(t, "every event", func() bool { return len(rc.received()) >= n })
		time.Sleep(100 * time.Millisecond) // twenty polls of each: no second delivery
		seen := map[string]bool{}
		for _, r := range rc.received() {
			if seen[r.ID] {
				t.Fatalf("message %s delivered twice", r.ID)
			}
			seen[r.ID] = true
		}
		if len(seen) != n {
			t.Fatalf("%d messages, want %d", len(seen), n)
		}
	})
}
