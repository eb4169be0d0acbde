package dataplane

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/daemon"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/nucleus"
	"github.com/omniedge/omni/internal/edge/wire"
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
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(ctx, daemon.Config{Server: env.URL, SecurityKey: key, Name: name, StateDir: dir},
			daemon.Deps{Tunnels: tunnels, Nucleus: sessions})
	}()
	t.Cleanup(func() {
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
	var st daemon.Status
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		st, err = daemon.Query(context.Background(), dir)
		if err == nil && st.State == "running" && len(st.Networks) == 1 && st.Networks[0].Registered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %s not up: %+v %v", name, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	v4 := netip.MustParsePrefix(st.Networks[0].VirtualIP).Addr()
	v6 := netip.MustParsePrefix(st.Networks[0].VirtualIPv6).Addr()
	pub, err := daemon.ParseKey(st.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testEdge{tun: ct, in: drainTUN(t, ct), tunnel: made.Load(), key: pub, v4: v4, v6: v6}, dir
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
