package nucleus

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// An answer older than the TTL is not used while the Directory answers:
// a member the control plane removed without a notice reaching this
// nucleus (and so kept in the old answer) is refused on its next frame,
// which waits for the reload, instead of being served by the old answer.
func TestStaleAnswerReloadedBeforeUse(t *testing.T) {
	h := newHarnessWith(t, newTestDir(), func(o *Options) { o.Keepalive = 10 * time.Minute })
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	lookups := h.srv.Stats().Lookups

	h.dir.unbind(netA, b.key) // the notice is lost
	h.clk.Advance(2 * 30 * time.Second)
	ack := b.c.Status().LastAck
	b.keepalive()
	testenv.Eventually(t, "B's keepalive refused after the reload", func() bool { return h.dropped(DropNotMember) >= 1 })
	if got := h.srv.Stats().Lookups; got != lookups+1 {
		t.Fatalf("%d lookups, want one reload", got-lookups)
	}
	if b.c.Status().LastAck.After(ack) {
		t.Fatal("B's keepalive was answered from the stale answer")
	}
	a.waitPeers("B evicted", lacks(b.key))
}

// InvalidateAll (the notices' subscription came back: some may have been
// lost) reloads every network held, and until its reload arrives no frame
// is served from the old answer.
func TestInvalidateAllReloadsBeforeUse(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	c := h.edge(netB, secrets[netB], 3)
	a.register()
	b.register()
	c.register()
	a.waitPeers("B", has(b.key))
	lookups := h.srv.Stats().Lookups

	h.dir.unbind(netA, b.key) // the notice is lost
	h.srv.InvalidateAll()
	a.waitPeers("B evicted", lacks(b.key))
	testenv.Eventually(t, "both networks reloaded", func() bool { return h.srv.Stats().Lookups >= lookups+2 })
	ack := b.c.Status().LastAck
	b.keepalive()
	testenv.Eventually(t, "B's keepalive refused", func() bool { return h.dropped(DropNotMember) >= 1 })
	if b.c.Status().LastAck.After(ack) {
		t.Fatal("a removed member was answered")
	}
	// The other network carries on.
	ack = c.c.Status().LastAck
	h.clk.Advance(time.Millisecond)
	c.keepalive()
	testenv.Eventually(t, "C answered", func() bool { return c.c.Status().LastAck.After(ack) })
}

// Until the reload after InvalidateAll arrives, the suspect answer is not
// used: with a slow Directory a frame waits for it.
func TestInvalidateAllSuspectUntilReloaded(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	h.dir.mu.Lock()
	h.dir.delay = 300 * time.Millisecond
	h.dir.mu.Unlock()
	h.dir.unbind(netA, b.key)
	h.srv.InvalidateAll()
	ack := b.c.Status().LastAck
	b.keepalive() // arrives while the reload runs
	testenv.Eventually(t, "B's keepalive refused", func() bool { return h.dropped(DropNotMember) >= 1 })
	if b.c.Status().LastAck.After(ack) {
		t.Fatal("a frame was served from the suspect answer")
	}
}

// A frame that cannot be parked while its network is looked up (every
// place taken) is counted as throttled, not lost silently.
func TestFailedParkCountedAsThrottled(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	srv, err := NewServer(testOptions(Options{Directory: newTestDir(), Clock: clk}))
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	srv.parkedFrames = maxParked
	srv.mu.Unlock()
	from := netip.MustParseAddrPort("192.0.2.1:1111")
	c := srv.cookies.make(from)
	body := append(keepaliveMsg{Key: testKey(1)}.encode(), c[:]...)
	f := sealNonce(testDeviceKey(secrets[netA], testKey(1)), TypeKeepalive, netA, clk.Now().UnixMilli(), [nonceSize]byte{1}, body)
	if out := srv.handle(context.Background(), f, from); len(out) != 0 {
		t.Fatalf("answered %d frames", len(out))
	}
	if n := srv.Stats().Dropped[DropThrottled]; n != 1 {
		t.Fatalf("throttled drops %d, want the unparked frame counted", n)
	}
}
