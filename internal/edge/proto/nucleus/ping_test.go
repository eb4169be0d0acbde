package nucleus

import (
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/testenv"
)

type pongSeen struct {
	peer wgkey.Key
	from netip.AddrPort
}

// A PING sent straight to a peer is answered with a PONG to its source
// address; frames of another network or naming another key are dropped,
// and the nucleus takes no part beyond telling the two of each other
// (PING and PONG are keyed with the Diffie–Hellman of their keys, so a
// device pings only its peers).
func TestPingPongBetweenEdges(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	b := h.edge(netA, secrets[netA], 2)
	pongs := make(chan pongSeen, 8)
	a.c.OnPong(func(p wgkey.Key, from netip.AddrPort) { pongs <- pongSeen{p, from} })
	if err := a.c.Ping(b.key, b.addr()); err == nil {
		t.Fatal("a PING was sent to a device that is not a peer yet")
	}
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	frames := h.srv.Stats().Frames

	if err := a.c.Ping(b.key, b.addr()); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p.peer != b.key || p.from != b.addr() {
			t.Fatalf("pong %+v, want from %v at %v", p, b.key, b.addr())
		}
	case <-time.After(wait):
		t.Fatal("no pong")
	}
	if st := h.srv.Stats(); st.Frames != frames {
		t.Fatalf("the nucleus saw %d frames", st.Frames-frames)
	}

	// A ping naming a key other than the receiver's is not answered, nor
	// is one of another network: X pings device 2 in netB, where the same
	// key is a member too, at B's socket of netA.
	x := h.edge(netB, secrets[netB], 3)
	b2 := h.edge(netB, secrets[netB], 2)
	b2.register()
	x.register()
	xp := make(chan pongSeen, 8)
	x.c.OnPong(func(p wgkey.Key, from netip.AddrPort) { xp <- pongSeen{p, from} })
	dropped := b.c.Status().Dropped
	a.send(seal(pairKeys(testPriv(1), a.key, b.key).key(DeriveKey(secrets[netA])), TypePing, netA, h.clk.Now(),
		pairMsg{From: a.key, To: testKey(9)}.encode()), b.addr())
	if err := x.c.Ping(b.key, b.addr()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "foreign pings dropped", func() bool { return b.c.Status().Dropped >= dropped+2 })
	select {
	case p := <-pongs:
		t.Fatalf("unexpected pong %+v", p)
	case p := <-xp:
		t.Fatalf("foreign network got pong %+v", p)
	case <-time.After(200 * time.Millisecond):
	}

	// A replayed PONG is dropped.
	if err := a.c.Ping(b.key, b.addr()); err != nil {
		t.Fatal(err)
	}
	<-pongs
	pong := b.sentOfType(TypePong)
	dropped = a.c.Status().Dropped
	a.c.Handle(pong, b.addr())
	if a.c.Status().Dropped != dropped+1 {
		t.Fatal("replayed pong accepted")
	}
}
