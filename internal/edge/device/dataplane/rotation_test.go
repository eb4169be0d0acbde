package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/tunnel"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// secretVersionOf is the secret version the daemon at dir reports.
func secretVersionOf(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := daemon.Query(context.Background(), dir)
	if err != nil || len(st.Networks) != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	return st.Networks[0].SecretVersion
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// member joins a device with a fresh key to network n through the API.
func member(t *testing.T, env *edgetest.Env, u edgetest.User, n wire.Network, hw string) (wgkey.Key, wire.Device, wire.JoinResponse) {
	t.Helper()
	ctx := context.Background()
	api := env.Client(u)
	priv, err := wgkey.GeneratePrivate()
	if err != nil {
		t.Fatal(err)
	}
	d, err := api.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: hw, HardwareUUID: hw, Platform: "linux", PublicKey: priv.PublicKey().String()})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := api.Join(ctx, n.ID, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	return priv, d, jr
}

// uniquePing is an IPv4 ping whose payload no other packet of the test
// has, so that a copy sent earlier cannot pass for it.
func uniquePing(dst, src netip.Addr) []byte {
	p := tuntest.Ping(dst, src)
	rand.Read(p[len(p)-4:]) // the echo's 4-byte payload
	return p
}

// neverArrives writes pkt into from's TUN for a while and fails if it
// comes out of to's TUN.
func neverArrives(t *testing.T, what string, from, to *testEdge, pkt []byte, during time.Duration) {
	t.Helper()
	deadline := time.Now().Add(during)
	for time.Now().Before(deadline) {
		select {
		case from.tun.Outbound <- pkt:
		case <-time.After(100 * time.Millisecond):
		}
		select {
		case got := <-to.in:
			if bytes.Equal(got, pkt) {
				t.Fatalf("%s: delivered", what)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// A device removed from the network keeps the old secret and its own
// key: it can register neither as itself nor at a member's address, the
// members drop it at once, and it cannot complete a WireGuard handshake
// with a member even where that member still lists it.
func TestFormerMemberLockedOut(t *testing.T) {
	srv, nuc, env := startControlPlane(t)
	u := env.NewUser("pro")
	api := env.Client(u)
	ctx := context.Background()
	n, err := api.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home"})
	if err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	a, da := runDaemon(t, env, u.Key, "alpha", nuc, &blocked)
	b, db := runDaemon(t, env, u.Key, "beta", nuc, &blocked)
	exchange(t, a, b)

	cpriv, cdev, cj := member(t, env, u, n, "hw-gamma")
	cv4, cv6 := netip.MustParseAddr(cj.VirtualIP), netip.MustParseAddr(cj.VirtualIPv6)
	c, err := startEdgeWith(t, edgeConfig{network: n.ID, secret: cj.SecretKey, priv: cpriv, index: 3, v4: cv4, v6: cv6, nuc: nuc, nucKey: wgkey.Key(srv.PublicKey())})
	if err != nil {
		t.Fatalf("member C did not register: %v", err)
	}
	deliver(t, c, a, uniquePing(a.v4, c.v4))

	// The owner removes C.
	if err := api.Leave(ctx, n.ID, cdev.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "A and B on the new secret", 5*time.Second, func() bool {
		return secretVersionOf(t, da) == 2 && secretVersionOf(t, db) == 2
	})
	waitUntil(t, "C evicted and dropped by A", 5*time.Second, func() bool {
		return a.path(c.key).Path == daemon.PathNone && len(srv.Peers(n.ID)) == 2
	})

	// C comes back with the old secret, as itself and at B's address.
	for _, at := range [][2]netip.Addr{{cv4, cv6}, {b.v4, b.v6}} {
		if _, err := startEdgeWith(t, edgeConfig{network: n.ID, secret: cj.SecretKey, priv: cpriv, index: 4, v4: at[0], v6: at[1], nuc: nuc, nucKey: wgkey.Key(srv.PublicKey())}); err == nil {
			t.Fatalf("the former member registered at %v with the old secret", at[0])
		}
	}
	for _, p := range srv.Peers(n.ID) {
		if p.PublicKey == wgkey.Key(c.key) {
			t.Fatalf("the former member is registered: %+v", p)
		}
	}
	for _, p := range a.tunnel.Status().Peers {
		if p.PublicKey == c.key {
			t.Fatalf("A still lists C: %+v", p)
		}
	}
	// A's packets for B's address never reach C; C's never reach A.
	neverArrives(t, "A → B's address at C", a, c, uniquePing(b.v4, a.v4), 2*time.Second)
	neverArrives(t, "C → A", c, a, uniquePing(a.v4, c.v4), 2*time.Second)

	// Even listed by A again (a peer list that lags), C cannot complete a
	// handshake: the preshared keys differ.
	at := a.tunnel.(*Tunnel)
	cAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.tunnel.(*Tunnel).dev.Bind().LocalPort())
	if err := at.dev.SetPeers(append(tunnelPeers(at), tunnel.Peer{PublicKey: wgkey.Key(c.key), Endpoint: cAddr, Addr4: cv4})); err != nil {
		t.Fatal(err)
	}
	neverArrives(t, "C → A, listed again", c, a, uniquePing(a.v4, c.v4), 3*time.Second)
	if st := a.path(c.key); !st.LastHandshake.IsZero() {
		t.Fatalf("C completed a handshake with A: %+v", st)
	}
}

// tunnelPeers is the tunnel's current peer set.
func tunnelPeers(t *Tunnel) []tunnel.Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []tunnel.Peer
	for _, p := range t.peers {
		out = append(out, tunnel.Peer{PublicKey: wgkey.Key(p.PublicKey), Endpoint: p.Endpoint, Relayed: p.Relayed, Addr4: p.VirtualIP, Addr6: p.VirtualIPv6})
	}
	return out
}

// When a member leaves, the others switch their WireGuard preshared keys
// and signaling key to the new secret in place: traffic between them does
// not stop (pings every 20 ms across the rotation), and the next
// handshake uses the new key on both sides.
func TestRotationKeepsTrafficFlowing(t *testing.T) {
	_, nuc, env := startControlPlane(t)
	u := env.NewUser("pro")
	api := env.Client(u)
	ctx := context.Background()
	n, err := api.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home"})
	if err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	a, da := runDaemon(t, env, u.Key, "alpha", nuc, &blocked)
	b, db := runDaemon(t, env, u.Key, "beta", nuc, &blocked)
	exchange(t, a, b)
	_, cdev, _ := member(t, env, u, n, "hw-gamma")

	// Ping A → B every 20 ms; B records the arrivals.
	var mu sync.Mutex
	var arrivals []time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Int64 // a loaded machine drops ticks: the arrivals are judged against what was sent
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint32(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := tuntest.Ping(b.v4, a.v4)
			binary.BigEndian.PutUint32(p[len(p)-4:], seq)
			select {
			case a.tun.Outbound <- p:
				sent.Add(1)
			case <-stop:
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-b.in:
				mu.Lock()
				arrivals = append(arrivals, time.Now())
				mu.Unlock()
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := api.Leave(ctx, n.ID, cdev.ID); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	waitUntil(t, "A and B on the new secret", 5*time.Second, func() bool {
		return secretVersionOf(t, da) == 2 && secretVersionOf(t, db) == 2
	})
	t.Logf("both switched %v after the leave", time.Since(left))
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	var gap time.Duration
	for i := 1; i < len(arrivals); i++ {
		gap = max(gap, arrivals[i].Sub(arrivals[i-1]))
	}
	n0 := len(arrivals)
	mu.Unlock()
	t.Logf("%d of %d pings arrived, longest gap %v", n0, sent.Load(), gap)
	if int64(n0) < sent.Load()*3/4 || n0 < 20 || gap > time.Second {
		t.Fatalf("%d of %d pings arrived, longest gap %v: traffic stopped across the rotation", n0, sent.Load(), gap)
	}

	// A new session: A drops and re-adds B, and the handshake that follows
	// needs the new preshared key on both sides.
	at := a.tunnel.(*Tunnel)
	peers := tunnelPeers(at)
	before := a.path(b.key).LastHandshake
	if err := at.dev.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if err := at.dev.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	deliver(t, a, b, uniquePing(b.v4, a.v4))
	if hs := a.path(b.key).LastHandshake; !hs.After(before) {
		t.Fatalf("no new handshake (%v, before %v)", hs, before)
	}
}
