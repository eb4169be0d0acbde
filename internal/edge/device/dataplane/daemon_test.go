package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// startControlPlane runs an in-process control plane and the nucleus
// `omni serve` builds over it (its directory is the Service, and it
// reloads the networks the Service announces as changed).
func startControlPlane(t *testing.T) (*nucleus.Server, netip.AddrPort, *edgetest.Env) {
	t.Helper()
	pc, nuc := listenNucleus(t)
	env := edgetest.New(t, edgetest.Options{Config: func(c *config.Config) { c.NucleusPublic = nuc.String() }})
	srv, err := env.App.Nucleus(nucleus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	serveNucleus(t, srv, pc)
	return srv, nuc, env
}

// runDaemon runs the real edge daemon with these adapters on an in-memory
// TUN until the test ends; it returns the edge once its network is up.
func runDaemon(t *testing.T, env *edgetest.Env, key, name string, nuc netip.AddrPort, blocked *atomic.Bool) (*testEdge, string) {
	t.Helper()
	dir := t.TempDir()
	e, stop := startDaemon(t, env, key, name, dir, nuc, blocked)
	t.Cleanup(stop)
	if err := e.waitUp(t, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return e, dir
}

// startDaemon starts the real edge daemon with these adapters on an
// in-memory TUN, with its state in dir; stop ends it (and may be called
// more than once). The returned edge is filled in by waitUp.
func startDaemon(t *testing.T, env *edgetest.Env, key, name, dir string, nuc netip.AddrPort, blocked *atomic.Bool) (*testEdge, func()) {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	plain, sessions := New(Options{
		TUN:        func(daemon.NetworkConfig) tun.Device { return ct.TUN() },
		ListenAddr: netip.MustParseAddr("127.0.0.1"),
		AnyPort:    true,
		DropFrom:   func(from netip.AddrPort) bool { return blocked.Load() && from != nuc },
		Tick:       50 * time.Millisecond,
		Paths:      PathConfig{DirectTimeout: 2 * time.Second, RetryEvery: 2 * time.Second, PingEvery: 250 * time.Millisecond, DeadAfter: 1500 * time.Millisecond},
	})
	var made atomic.Pointer[Tunnel] // the daemon's tunnel, for the tests to look into
	tunnels := func(ctx context.Context, cfg daemon.NetworkConfig) (daemon.Tunnel, error) {
		tn, err := plain(ctx, cfg)
		if err == nil {
			made.Store(tn.(*Tunnel))
		}
		return tn, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(ctx, daemon.Config{Server: env.URL, SecurityKey: key, Name: name, StateDir: dir},
			daemon.Deps{Tunnels: tunnels, Nucleus: sessions})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("daemon %s: %v", name, err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("daemon %s did not stop", name)
			}
		})
	}
	return &testEdge{tun: ct, in: drainTUN(t, ct), dir: dir, made: &made}, stop
}

// waitUp waits until the daemon of e runs with its one network
// registered at the nucleus, and fills in its key and addresses.
func (e *testEdge) waitUp(t *testing.T, limit time.Duration) error {
	t.Helper()
	var st daemon.Status
	deadline := time.Now().Add(limit)
	for {
		var err error
		st, err = daemon.Query(context.Background(), e.dir)
		if err == nil && st.State == "running" && len(st.Networks) == 1 && st.Networks[0].Registered {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon in %s not up: %+v %v", e.dir, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	k, err := wgkey.Parse(st.PublicKey)
	if err != nil {
		return fmt.Errorf("daemon public key %q: %w", st.PublicKey, err)
	}
	e.key = wgkey.Key(k)
	e.tunnel = e.made.Load()
	e.v4 = netip.MustParsePrefix(st.Networks[0].VirtualIP).Addr()
	e.v6 = netip.MustParsePrefix(st.Networks[0].VirtualIPv6).Addr()
	return nil
}

// pathVia is the path the daemon at dir reports for its one peer.
func pathVia(t *testing.T, dir string) daemon.PeerReport {
	t.Helper()
	st, err := daemon.Query(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Networks) != 1 || len(st.Networks[0].Peers) != 1 {
		return daemon.PeerReport{Path: daemon.PathNone}
	}
	return st.Networks[0].Peers[0]
}

func waitReport(t *testing.T, what string, want daemon.Path, dirs ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, d := range dirs {
			if pathVia(t, d).Path != want {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, d := range dirs {
				t.Logf("%s: %+v", d, pathVia(t, d))
			}
			t.Fatalf("%s: status does not report %s within 15 s", what, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two real edge daemons joined to one network through the in-process
// control plane reach each other through the adapters, and `omni edge
// status` (the control socket) reports direct, then relayed while direct
// UDP is cut, then direct again.
func TestDaemonsOverRealNucleus(t *testing.T) {
	// The control plane advertises the nucleus's address; the nucleus is
	// the one `omni serve` builds over the control plane.
	srv, nuc, env := startControlPlane(t)
	u := env.NewUser("")
	if _, err := env.Client(u).CreateNetwork(context.Background(), wire.CreateNetworkRequest{Name: "home"}); err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	a, da := runDaemon(t, env, u.Key, "alpha", nuc, &blocked)
	b, db := runDaemon(t, env, u.Key, "beta", nuc, &blocked)

	exchange(t, a, b)
	waitReport(t, "start", daemon.PathDirect, da, db)
	if r := pathVia(t, da); r.VirtualIP != b.v4.String() || r.Endpoint == nuc.String() || r.HandshakeAge == nil {
		t.Fatalf("direct report %+v", r)
	}
	if n := srv.Stats().RelayedPackets; n != 0 {
		t.Fatalf("%d packets relayed on a direct path", n)
	}
	// netcheck: the nucleus answers over UDP and sees the edge at its own
	// address and port.
	nc, err := daemon.Netcheck(context.Background(), da)
	if err != nil || len(nc.Networks) != 1 {
		t.Fatalf("netcheck: %+v %v", nc, err)
	}
	if n := nc.Networks[0]; !n.UDP || n.Probes != 3 || len(n.RTTMS) != 3 || n.NucleusAddr != nuc.String() || n.NAT != daemon.NATNone ||
		n.Observed != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(n.LocalPort)).String() || n.Error != "" {
		t.Fatalf("netcheck %+v", n)
	}

	blocked.Store(true)
	waitReport(t, "direct UDP cut", daemon.PathRelayed, da, db)
	before := srv.Stats().RelayedPackets
	exchange(t, a, b)
	if after := srv.Stats().RelayedPackets; after <= before {
		t.Fatalf("relay counter %d → %d while relayed", before, after)
	}
	if r := pathVia(t, da); r.Endpoint != nuc.String() {
		t.Fatalf("relayed report %+v, want endpoint %v", r, nuc)
	}

	blocked.Store(false)
	waitReport(t, "direct UDP back", daemon.PathDirect, da, db)
	exchange(t, a, b)
}

// Two new edges choose the direct path on the same PONG, and both would
// start a WireGuard handshake at that moment; crossed first handshakes
// leave neither side with a session until wireguard-go retries 5 or 15 s
// later. Fifty pairs of fresh daemons (fresh keys, a fresh account and
// network each) must each deliver their first packet both ways within
// 2 s of both being up.
func TestNewEdgesFirstPacketWithinTwoSeconds(t *testing.T) {
	_, nuc, env := startControlPlane(t)
	const (
		starts = 50
		limit  = 2 * time.Second
	)
	var slow int
	var worst time.Duration
	for i := 0; i < starts; i++ {
		u := env.NewUser("")
		if _, err := env.Client(u).CreateNetwork(context.Background(), wire.CreateNetworkRequest{Name: "home"}); err != nil {
			t.Fatal(err)
		}
		var blocked atomic.Bool
		a, stopA := startDaemon(t, env, u.Key, "alpha", t.TempDir(), nuc, &blocked)
		b, stopB := startDaemon(t, env, u.Key, "beta", t.TempDir(), nuc, &blocked)
		for _, e := range []*testEdge{a, b} {
			if err := e.waitUp(t, 15*time.Second); err != nil {
				stopA()
				stopB()
				t.Fatal(err)
			}
		}
		up := time.Now()
		rxA, rxB := a.in, b.in
		dab, okAB := firstDelivery(a, rxB, tuntest.Ping(b.v4, a.v4), limit)
		dba, okBA := firstDelivery(b, rxA, tuntest.Ping(a.v4, b.v4), limit-time.Since(up))
		took := time.Since(up)
		worst = max(worst, took)
		if !okAB || !okBA {
			slow++
			t.Errorf("start %d: first packet a→b %v (delivered %v), b→a %v (delivered %v): not both within %v of both edges up",
				i, dab.Round(time.Millisecond), okAB, dba.Round(time.Millisecond), okBA, limit)
		}
		stopA()
		stopB()
	}
	t.Logf("%d of %d starts over %v; slowest %v", slow, starts, limit, worst.Round(time.Millisecond))
}
