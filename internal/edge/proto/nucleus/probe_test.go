package nucleus

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// Probe measures a KEEPALIVE's round trip to the nucleus and reports the
// address the nucleus sees; it refuses before the registration and gives
// up when the nucleus does not answer.
func TestProbeMeasuresKeepaliveRoundTrip(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	ctx := context.Background()
	if _, _, err := a.c.Probe(ctx); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("probe before registering: %v", err)
	}
	a.register()
	if st := a.c.Status(); st.RTT != 0 || len(st.Local) != 1 || st.Local[0] != netip.MustParseAddrPort("192.168.1.10:51820") {
		t.Fatalf("status after REGISTER: %+v (a REGISTER measures no round trip; the local endpoints are reported)", st)
	}

	// The frame takes 3 ms on the (fake) clock.
	send := a.c.cfg.Send
	a.c.cfg.Send = func(b []byte, to netip.AddrPort) error {
		h.clk.Advance(3 * time.Millisecond)
		return send(b, to)
	}
	pctx, cancel := context.WithTimeout(ctx, wait)
	rtt, observed, err := a.c.Probe(pctx)
	cancel()
	if err != nil || rtt != 3*time.Millisecond || observed != a.addr() {
		t.Fatalf("probe: %v %v %v; want 3ms from %v", rtt, observed, err, a.addr())
	}
	if st := a.c.Status(); st.RTT != 3*time.Millisecond || st.RTTAt != h.clk.Now() {
		t.Fatalf("status after a probe: %+v", st)
	}

	// Nothing reaches the nucleus: the probe ends with its context.
	a.c.cfg.Send = func([]byte, netip.AddrPort) error { return nil }
	pctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := a.c.Probe(pctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered probe: %v", err)
	}
}
