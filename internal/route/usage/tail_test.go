package usage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/route/store"
	"github.com/omniedge/omni/internal/route/usage"
)

// The live tail sends the records written after it opened, oldest first,
// with the logs' filters, and resumes after Last-Event-ID.
func TestTail(t *testing.T) {
	st := sqliteStore(t)
	seed(t, st)
	rec := usage.New(usage.Options{Store: st, Clock: clock.NewFake(now), Log: logging.Discard(), TailEvery: 20 * time.Millisecond})
	mux := http.NewServeMux()
	rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	open := func(query, lastID string) (*bufio.Reader, func()) {
		c, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(c, "GET", srv.URL+"/api/usage/tail"+query, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("tail = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return bufio.NewReader(resp.Body), func() { cancel(); resp.Body.Close() }
	}
	// next reads the next usage event: its id and record.
	next := func(r *bufio.Reader) (string, store.UsageRecord) {
		t.Helper()
		var id string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("tail ended: %v", err)
			}
			line = strings.TrimRight(line, "\n")
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				var rec store.UsageRecord
				if err := json.Unmarshal([]byte(v), &rec); err != nil {
					t.Fatal(err)
				}
				return id, rec
			}
		}
	}

	all, closeAll := open("", "")
	defer closeAll()
	onlyCl, closeCl := open("?provider=cl", "")
	defer closeCl()
	time.Sleep(100 * time.Millisecond) // both streams have read where they start
	err := st.InsertUsage(context.Background(), []store.UsageRecord{
		{At: now, Provider: "oa", Model: "oa/new-1", Status: 200},
		{At: now, Provider: "cl", Model: "cl/new-2", Status: 200},
	})
	if err != nil {
		t.Fatal(err)
	}
	id1, r1 := next(all)
	_, r2 := next(all)
	if r1.Model != "oa/new-1" || r2.Model != "cl/new-2" {
		t.Fatalf("tail sent %q then %q", r1.Model, r2.Model)
	}
	if _, r := next(onlyCl); r.Model != "cl/new-2" {
		t.Fatalf("filtered tail sent %q", r.Model)
	}
	// Resuming after the first of the two sends the second.
	resumed, closeResumed := open("", id1)
	defer closeResumed()
	if _, r := next(resumed); r.Model != "cl/new-2" {
		t.Fatalf("resumed tail sent %q", r.Model)
	}
}

// Live tails are capped per process: one past MaxTails is answered 429
// with a JSON error, and a closed tail frees its place.
func TestTailCap(t *testing.T) {
	st := sqliteStore(t)
	rec := usage.New(usage.Options{Store: st, Clock: clock.NewFake(now), Log: logging.Discard(), TailEvery: 20 * time.Millisecond, MaxTails: 2})
	mux := http.NewServeMux()
	rec.Register(func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) })
	srv := httptest.NewServer(httpx.Wrap(mux, logging.Discard(), nil))
	t.Cleanup(srv.Close)
	open := func() (*http.Response, func()) {
		c, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(c, "GET", srv.URL+"/api/usage/tail", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, func() { cancel(); resp.Body.Close() }
	}
	var closers []func()
	for range 2 {
		resp, closeIt := open()
		closers = append(closers, closeIt)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tail within the cap = %d", resp.StatusCode)
		}
	}
	resp, closeIt := open()
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	closeIt()
	if resp.StatusCode != http.StatusTooManyRequests || body.Error.Code != "too_many_tails" {
		t.Fatalf("tail past the cap = %d %+v, want 429 too_many_tails", resp.StatusCode, body)
	}
	closers[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, closeIt := open()
		closeIt()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed tail did not free its place: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	closers[1]()
}
