package nucleus

import (
	"net/netip"
	"testing"
	"time"
)

type pongSeen struct {
	peer Key
	from netip.AddrPort
}

// A PING sent straight to a peer is answered with a PONG to its source
// address; frames of another network or naming another key are dropped,
// and the nucleus takes no part.
func TestPingPongBetweenEdges(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	b := h.edge(netA, secrets[netA], 2)
	x := h.edge(netB, secrets[netB], 3)
	pongs := make(chan pongSeen, 8)
	a.c.OnPong(func(p Key, from netip.AddrPort) { pongs <- pongSeen{p, from} })
	xp := make(chan pongSeen, 8)
	x.c.OnPong(func(p Key, from netip.AddrPort) { xp <- pongSeen{p, from} })

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
	if st := h.srv.Stats(); st.Frames != 0 {
		t.Fatalf("the nucleus saw %d frames", st.Frames)
	}

	// A ping naming a key other than the receiver's is not answered, nor is
	// one of another network (its MAC fails under b's key).
	var other Key
	other[0] = 9
	dropped := b.c.Status().Dropped
	if err := a.c.Ping(other, b.addr()); err != nil {
		t.Fatal(err)
	}
	if err := x.c.Ping(b.key, b.addr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "foreign ping dropped", func() bool { return b.c.Status().Dropped > dropped })
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
