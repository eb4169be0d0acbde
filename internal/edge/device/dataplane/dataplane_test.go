package dataplane

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/tunnel"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

const (
	testNetwork = "vn_dataplane"
	testSecret  = "dataplane-secret-0123456789abcdef"
)

// testNucleusPriv is the static key of the nucleus startNucleus runs.
var testNucleusPriv = func() *ecdh.PrivateKey {
	seed := sha256.Sum256([]byte("dataplane test nucleus"))
	k, err := nucleus.NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
}()

// testDirectory is the nucleus's Directory of the one test network; the
// test edges bind their keys as they start.
type testDirectory struct {
	mu       sync.Mutex
	bindings []nucleus.Binding
}

func (d *testDirectory) Network(_ context.Context, id string) (nucleus.NetworkInfo, error) {
	if id != testNetwork {
		return nucleus.NetworkInfo{}, nucleus.ErrUnknownNetwork
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return nucleus.NetworkInfo{Secret: []byte(testSecret), SecretVersion: 1, Members: slices.Clone(d.bindings)}, nil
}

func (d *testDirectory) bind(b nucleus.Binding) {
	d.mu.Lock()
	if !slices.Contains(d.bindings, b) {
		d.bindings = append(d.bindings, b)
	}
	d.mu.Unlock()
}

// startNucleus runs a real nucleus over a testDirectory on loopback until
// the test ends.
func startNucleus(t *testing.T) (*nucleus.Server, netip.AddrPort, *testDirectory) {
	t.Helper()
	dir := &testDirectory{}
	srv, err := nucleus.NewServer(nucleus.Options{Directory: dir, PrivateKey: testNucleusPriv})
	if err != nil {
		t.Fatal(err)
	}
	pc, addr := listenNucleus(t)
	serveNucleus(t, srv, pc)
	return srv, addr, dir
}

// listenNucleus opens the nucleus's socket (its address is needed before
// the control plane that advertises it).
func listenNucleus(t *testing.T) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// serveNucleus serves srv on pc until the test ends.
func serveNucleus(t *testing.T, srv *nucleus.Server, pc net.PacketConn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("nucleus did not stop")
		}
	})
}

// testEdge is one device: the adapters as the daemon drives them, on an
// in-memory TUN.
type testEdge struct {
	tun    *tuntest.ChannelTUN
	in     chan []byte // what came out of the TUN (see drainTUN)
	tunnel daemon.Tunnel
	sess   daemon.Session // nil for a daemon's edge
	key    wgkey.Key
	v4, v6 netip.Addr
	dir    string                  // the daemon's state directory (daemon tests)
	made   *atomic.Pointer[Tunnel] // the daemon's tunnel once made (daemon tests)
}

func startEdge(t *testing.T, dir *testDirectory, i byte, nuc netip.AddrPort, blocked *atomic.Bool) *testEdge {
	t.Helper()
	priv, err := wgkey.GeneratePrivate()
	if err != nil {
		t.Fatal(err)
	}
	e, stop := startEdgeKey(t, dir, i, nuc, blocked, priv)
	t.Cleanup(func() { stop(true) })
	return e
}

// startEdgeKey starts device i of the test network with the private key
// priv, bound in dir and registered at the nucleus; stop ends it, leaving
// the nucleus first or, like a crash, not (only its first call counts).
func startEdgeKey(t *testing.T, dir *testDirectory, i byte, nuc netip.AddrPort, blocked *atomic.Bool, priv wgkey.Key) (*testEdge, func(leave bool)) {
	t.Helper()
	ec := edgeConfig{network: testNetwork, secret: testSecret, priv: priv, index: i,
		v4: netip.AddrFrom4([4]byte{100, 66, 0, i}), v6: netip.AddrFrom16([16]byte{0xfd, 0x66, 15: i}), nuc: nuc, blocked: blocked}
	dir.bind(nucleus.Binding{Key: wgkey.Key(priv.PublicKey()), IP4: ec.v4, IP6: ec.v6})
	e, stop, err := startEdgeStop(t, ec)
	if err != nil {
		t.Fatal(err)
	}
	return e, stop
}

// drainTUN reads the TUN at once, as a kernel would: a packet nobody
// waits for (a copy deliver sent again) must not block the device's
// receive path, which a peer's removal waits for. What came out is on the
// channel; it is dropped when the channel is full.
func drainTUN(t *testing.T, ct *tuntest.ChannelTUN) chan []byte {
	in := make(chan []byte, 1024)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case p := <-ct.Inbound:
				select {
				case in <- p:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	return in
}

// edgeConfig is what startEdgeWith runs an edge with.
type edgeConfig struct {
	network, secret string
	priv            wgkey.Key
	index           byte
	v4, v6          netip.Addr
	nuc             netip.AddrPort
	nucKey          wgkey.Key    // zero: testNucleusPriv's
	blocked         *atomic.Bool // nil: never
}

// startEdgeWith runs the adapters as the daemon drives them, on an
// in-memory TUN, until the test ends; the error is the registration's
// (the edge then does not run).
func startEdgeWith(t *testing.T, ec edgeConfig) (*testEdge, error) {
	t.Helper()
	e, stop, err := startEdgeStop(t, ec)
	if err == nil {
		t.Cleanup(func() { stop(true) })
	}
	return e, err
}

// startEdgeStop is startEdgeWith with the stop left to the caller: stop
// ends the edge, leaving the nucleus first or, like a crash, not (only
// its first call counts).
func startEdgeStop(t *testing.T, ec edgeConfig) (*testEdge, func(leave bool), error) {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	blocked := ec.blocked
	if blocked == nil {
		blocked = &atomic.Bool{}
	}
	tunnels, sessions := New(Options{
		TUN:        func(daemon.NetworkConfig) tun.Device { return ct.TUN() },
		ListenAddr: netip.MustParseAddr("127.0.0.1"),
		AnyPort:    true,
		// Cutting the direct path drops everything but the nucleus.
		DropFrom: func(from netip.AddrPort) bool { return blocked.Load() && from != ec.nuc },
		Tick:     50 * time.Millisecond,
		Paths:    PathConfig{DirectTimeout: 2 * time.Second, RetryEvery: 2 * time.Second, PingEvery: 250 * time.Millisecond, DeadAfter: 1500 * time.Millisecond},
	})
	e := &testEdge{tun: ct, in: drainTUN(t, ct), key: wgkey.Key(ec.priv.PublicKey()), v4: ec.v4, v6: ec.v6}
	cfg := daemon.NetworkConfig{NetworkID: ec.network, Interface: fmt.Sprintf("omni%d", ec.index), MTU: 1420,
		PrivateKey: wgkey.Key(ec.priv), PublicKey: e.key, VirtualIP: netip.PrefixFrom(e.v4, 24),
		SecretKey: ec.secret, Nucleus: ec.nuc.String(), NucleusKey: cmp.Or(ec.nucKey, wgkey.Key(nucleus.PublicKeyOf(testNucleusPriv)))}
	if e.v6.IsValid() {
		cfg.VirtualIPv6 = netip.PrefixFrom(e.v6, 64)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	e.tunnel, err = tunnels(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sess, err := sessions(cfg, e.tunnel, daemon.SessionHooks{OnPeers: func(ps []daemon.Peer) {
		if err := e.tunnel.SetPeers(ps); err != nil {
			t.Errorf("SetPeers: %v", err)
		}
	}})
	if err != nil {
		cancel()
		e.tunnel.Close()
		t.Fatal(err)
	}
	e.sess = sess
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	err = sess.Register(rctx)
	rcancel()
	if err != nil {
		cancel()
		e.tunnel.Close()
		return e, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(ctx) }()
	var once sync.Once
	return e, func(leave bool) {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if leave {
				sess.Leave(context.Background())
			}
			e.tunnel.Close()
		})
	}, nil
}

// path is how e reaches peer according to Status.
func (e *testEdge) path(peer wgkey.Key) daemon.PeerStatus {
	for _, p := range e.tunnel.Status().Peers {
		if p.PublicKey == peer {
			return p
		}
	}
	return daemon.PeerStatus{Path: daemon.PathNone}
}

func waitPath(t *testing.T, what string, want daemon.Path, pairs ...[2]*testEdge) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, p := range pairs {
			if p[0].path(p[1].key).Path != want {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range pairs {
				t.Logf("%v → %v: %+v", p[0].v4, p[1].v4, p[0].path(p[1].key))
			}
			t.Fatalf("%s: path not %s within 15 s", what, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ping6(dst, src netip.Addr) []byte {
	p := make([]byte, 40+8)
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:], 8)
	p[6], p[7] = 59, 64 // no next header
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], "omniedge")
	return p
}

// deliver writes pkt into from's TUN until it comes out of to's TUN.
func deliver(t *testing.T, from, to *testEdge, pkt []byte) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case from.tun.Outbound <- pkt:
		case <-deadline.C:
			t.Fatalf("packet %v → %v not delivered", from.v4, to.v4)
		}
		select {
		case got := <-to.in:
			if bytes.Equal(got, pkt) {
				return
			}
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("packet %v → %v not delivered", from.v4, to.v4)
		}
	}
}

// firstDelivery writes pkt into from's TUN every 10 ms until it arrives on
// rx (the receiver's sink), for at most limit; it reports how long that
// took.
func firstDelivery(from *testEdge, rx <-chan []byte, pkt []byte, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case from.tun.Outbound <- pkt:
		case <-deadline.C:
			return time.Since(start), false
		}
	wait:
		for {
			select {
			case got := <-rx:
				if bytes.Equal(got, pkt) {
					return time.Since(start), true
				}
			case <-tick.C:
				break wait
			case <-deadline.C:
				return time.Since(start), false
			}
		}
	}
}

func exchange(t *testing.T, a, b *testEdge) {
	t.Helper()
	deliver(t, a, b, tuntest.Ping(b.v4, a.v4))
	deliver(t, b, a, tuntest.Ping(a.v4, b.v4))
	deliver(t, a, b, ping6(b.v6, a.v6))
}

// Two edges behind the adapters register at a real nucleus, talk
// directly, fall back to the relay when direct UDP between them is cut,
// and return to direct when it works again.
func TestTwoEdgesDirectRelayedDirect(t *testing.T) {
	srv, nuc, dir := startNucleus(t)
	var blocked atomic.Bool
	a := startEdge(t, dir, 1, nuc, &blocked)
	b := startEdge(t, dir, 2, nuc, &blocked)
	ab, ba := [2]*testEdge{a, b}, [2]*testEdge{b, a}

	exchange(t, a, b)
	waitPath(t, "start", daemon.PathDirect, ab, ba)
	if st := a.path(b.key); st.Endpoint.Addr() != netip.MustParseAddr("127.0.0.1") || st.VirtualIP != b.v4 ||
		st.VirtualIPv6 != b.v6 || st.RxBytes == 0 || st.TxBytes == 0 {
		t.Fatalf("direct status %+v", st)
	}
	if n := srv.Stats().RelayedPackets; n != 0 {
		t.Fatalf("%d packets relayed on a direct path", n)
	}

	blocked.Store(true)
	waitPath(t, "direct UDP cut", daemon.PathRelayed, ab, ba)
	if st := a.path(b.key); st.Endpoint != nuc {
		t.Fatalf("relayed status %+v, want endpoint %v", st, nuc)
	}
	before := srv.Stats().RelayedPackets
	exchange(t, a, b)
	if after := srv.Stats().RelayedPackets; after <= before {
		t.Fatalf("relay counter %d → %d while relayed", before, after)
	}

	blocked.Store(false)
	waitPath(t, "direct UDP back", daemon.PathDirect, ab, ba)
	exchange(t, a, b)
	before = srv.Stats().RelayedPackets
	exchange(t, a, b)
	if after := srv.Stats().RelayedPackets; after != before {
		t.Fatalf("relay counter %d → %d after returning to direct", before, after)
	}
}

// An exit selection naming a peer the tunnel does not know yet is kept
// and applied when the peer arrives (here the in-memory TUN refuses the
// routes, which proves the attempt).
func TestExitSelectionWaitsForPeer(t *testing.T) {
	_, nuc, dir := startNucleus(t)
	var blocked atomic.Bool
	a := startEdge(t, dir, 1, nuc, &blocked)
	exit := netip.MustParseAddr("100.66.0.9")
	if err := a.tunnel.SetExit(exit); err != nil {
		t.Fatalf("SetExit before the peer is known: %v", err)
	}
	peer := daemon.Peer{PublicKey: wgkey.Key{9}, VirtualIP: exit, Endpoint: netip.MustParseAddrPort("127.0.0.1:9")}
	if err := a.tunnel.SetPeers([]daemon.Peer{peer}); !errors.Is(err, tunnel.ErrNoKernelTUN) {
		t.Fatalf("SetPeers with the exit peer: %v, want the exit routes attempted", err)
	}
	if err := a.tunnel.SetExit(netip.Addr{}); err != nil {
		t.Fatalf("clearing the exit: %v", err)
	}
	if err := a.tunnel.SetPeers([]daemon.Peer{peer}); err != nil {
		t.Fatalf("SetPeers after clearing the exit: %v", err)
	}
}

// An edge that restarts with the same key, after leaving the nucleus or
// (a crash) without, so that its peer still holds the old WireGuard
// session, reaches that peer again both ways within 2 s of registering,
// whether its key is the lower or the higher of the two.
func TestRestartedEdgeFirstPacketWithinTwoSeconds(t *testing.T) {
	const limit = 2 * time.Second
	for _, tc := range []struct {
		name         string
		lower, leave bool
	}{
		{"lower key, leave", true, true},
		{"higher key, leave", false, true},
		{"lower key, crash", true, false},
		{"higher key, crash", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, nuc, dir := startNucleus(t)
			var blocked atomic.Bool
			var privs [2]wgkey.Key
			for i := range privs {
				var err error
				if privs[i], err = wgkey.GeneratePrivate(); err != nil {
					t.Fatal(err)
				}
			}
			slices.SortFunc(privs[:], func(x, y wgkey.Key) int {
				kx, ky := x.PublicKey(), y.PublicKey()
				return bytes.Compare(kx[:], ky[:])
			})
			// r restarts, s stays; r has the lower key when tc.lower.
			rPriv, sPriv := privs[1], privs[0]
			if tc.lower {
				rPriv, sPriv = privs[0], privs[1]
			}
			r, stopR := startEdgeKey(t, dir, 1, nuc, &blocked, rPriv)
			s, stopS := startEdgeKey(t, dir, 2, nuc, &blocked, sPriv)
			t.Cleanup(func() { stopS(true) })
			exchange(t, r, s)
			stopR(tc.leave)

			r, stopR = startEdgeKey(t, dir, 1, nuc, &blocked, rPriv)
			t.Cleanup(func() { stopR(true) })
			up := time.Now()
			rxR, rxS := r.in, s.in
			drs, okRS := firstDelivery(r, rxS, tuntest.Ping(s.v4, r.v4), limit)
			dsr, okSR := firstDelivery(s, rxR, tuntest.Ping(r.v4, s.v4), limit-time.Since(up))
			if !okRS || !okSR {
				t.Fatalf("after the restart: restarted → peer %v (delivered %v), peer → restarted %v (delivered %v): not both within %v",
					drs.Round(time.Millisecond), okRS, dsr.Round(time.Millisecond), okSR, limit)
			}
			t.Logf("first packets after %v", time.Since(up).Round(time.Millisecond))
		})
	}
}

// The tunnel's MTU leaves room for the relay header over the family the
// nucleus is reached by: 1420 over IPv4 and 1400 over IPv6, so that a
// full-size relayed packet fits a 1500-byte underlay link. A smaller
// configured MTU is kept.
func TestTunnelMTUFollowsNucleusFamily(t *testing.T) {
	for _, c := range []struct {
		nucleus         string
		configured, mtu int
	}{
		{"127.0.0.1:51820", 1420, 1420},
		{"[::1]:51820", 1420, 1400},
		{"[::ffff:127.0.0.1]:51820", 1420, 1420},
		{"[::1]:51820", 1300, 1300},
		{"[::1]:51820", 0, 1400},
	} {
		var got int
		tunnels, _ := New(Options{
			TUN:     func(cfg daemon.NetworkConfig) tun.Device { got = cfg.MTU; return tuntest.NewChannelTUN().TUN() },
			AnyPort: true,
		})
		priv, err := wgkey.GeneratePrivate()
		if err != nil {
			t.Fatal(err)
		}
		tn, err := tunnels(context.Background(), daemon.NetworkConfig{NetworkID: testNetwork, Interface: "omni0",
			MTU: c.configured, PrivateKey: wgkey.Key(priv), SecretKey: testSecret, Nucleus: c.nucleus})
		if err != nil {
			t.Fatal(err)
		}
		tn.Close()
		if got != c.mtu {
			t.Errorf("nucleus %s, configured MTU %d: tunnel MTU %d, want %d", c.nucleus, c.configured, got, c.mtu)
		}
	}
}
