package webhooks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/events"
)

// Publish never blocks: with the writer stopped, events past the
// in-memory queue are dropped and counted; events no webhook listens to
// are not even queued.
func TestPublishDropsWhenFull(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	s, err := New(Options{DB: db, MasterKey: masterKey, Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	h := hookRow{ID: "wh_1"}
	url, evs := "https://example.com", []string{events.KeyCreated}
	if _, err := s.apply(&h, body{URL: &url, Events: &evs}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.st.create(context.Background(), h, MaxWebhooks); err != nil {
		t.Fatal(err)
	}
	if err := s.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			s.Publish(context.Background(), events.Event{Type: events.KeyCreated})
			s.Publish(context.Background(), events.Event{Type: events.KeyRevoked})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked")
	}
	if len(s.queue) != 8 || s.Dropped() != 12 {
		t.Fatalf("queued %d, dropped %d; want 8 and 12", len(s.queue), s.Dropped())
	}
}

// The secret is sealed at rest: neither it nor its key is in the row.
func TestSecretSealedAtRest(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	n := startNode(t, db, clock.Real{})
	_, hook := n.do(t, "POST", "/api/webhooks", map[string]any{"url": "https://example.com/x"})
	secret := hook["secret"].(string)
	var stored, prefix string
	if err := db.QueryRow(context.Background(), `SELECT secret, secret_prefix FROM gateway_webhooks`).Scan(&stored, &prefix); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, strings.TrimPrefix(secret, secretPrefix)) || !strings.HasPrefix(stored, "v1:") || len(prefix) != 10 {
		t.Fatalf("stored %q (prefix %q) for secret %q", stored, prefix, secret)
	}
}

// A redirect is not followed: it is a failed attempt, and the target
// of the redirect hears nothing.
func TestRedirectNotFollowed(t *testing.T) {
	target := newReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	db := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	n := startNode(t, db, clock.Real{})
	_, hook := n.do(t, "POST", "/api/webhooks", map[string]any{"url": redirect.URL})
	st, res := n.do(t, "POST", "/api/webhooks/"+hook["id"].(string)+"/test", nil)
	if st != http.StatusOK || res["delivered"] != false || res["status"] != 307.0 || !strings.Contains(res["error"].(string), "redirect") {
		t.Fatalf("test through a redirect: %d %v", st, res)
	}
	if len(target.received()) != 0 {
		t.Fatal("the redirect was followed")
	}
}

// Delivered and failed deliveries are deleted after the retention;
// pending ones stay.
func TestRetention(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, filepath.Join(t.TempDir(), "omni.db"))
	ok, down := newReceiver(t), newReceiver(t)
	down.setStatus(http.StatusServiceUnavailable)
	n := startNode(t, db, clk)
	_, h1 := n.do(t, "POST", "/api/webhooks", map[string]any{"url": ok.URL})
	_, h2 := n.do(t, "POST", "/api/webhooks", map[string]any{"url": down.URL})
	n.s.Publish(context.Background(), events.Event{Type: events.KeyCreated})
	count := func(id string) int {
		_, out := n.do(t, "GET", "/api/webhooks/"+id+"/deliveries", nil)
		return len(out["data"].([]any))
	}
	first := func(id string) map[string]any {
		_, out := n.do(t, "GET", "/api/webhooks/"+id+"/deliveries", nil)
		if d := out["data"].([]any); len(d) == 1 {
			return d[0].(map[string]any)
		}
		return nil
	}
	testenv.Eventually(t, "both attempted and recorded", func() bool {
		d1, d2 := first(h1["id"].(string)), first(h2["id"].(string))
		return d1 != nil && d1["status"] == "delivered" && d2 != nil && d2["attempts"] == 1.0
	})
	clk.Advance(DefaultRetention + time.Hour)
	n.s.sweep(context.Background())
	if count(h1["id"].(string)) != 0 || count(h2["id"].(string)) != 1 {
		t.Fatalf("after the retention: %d delivered, %d pending kept", count(h1["id"].(string)), count(h2["id"].(string)))
	}
}
