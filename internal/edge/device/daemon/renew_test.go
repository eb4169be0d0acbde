package daemon

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

func strp(s string) *string { return &s }

// member returns the device's entry in a network's member list.
func (w *world) member(t *testing.T, networkID, deviceID string) wire.Member {
	t.Helper()
	ms, err := w.admin.Members(context.Background(), networkID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.DeviceID == deviceID {
			return m
		}
	}
	t.Fatalf("device %s is not a member of %s: %+v", deviceID, networkID, ms)
	return wire.Member{}
}

// beat lets the daemon send its next heartbeat and waits until it waits
// for the one after.
func (r *running) beat(t *testing.T) {
	t.Helper()
	waits := r.clk.wait(t, 1)
	r.clk.Advance(waits[0])
	r.clk.wait(t, 1)
}

// The daemon replaces its key at two thirds of the network's key lifetime
// (the control plane's time decides, not the device's): it registers a
// new public key, keeps the new pair in its state, and brings the network
// up again with it on the same interface and addresses.
func TestKeyRenewedBeforeExpiry(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	home := w.nets[0].ID
	if _, err := w.admin.UpdateNetwork(ctx, home, wire.UpdateNetworkRequest{KeyExpiry: strp("24h")}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	tuns, sess := r.dp.waitTunnels(t, 1)
	r.clk.wait(t, 1) // the first heartbeat is answered
	old, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := w.member(t, home, old.DeviceID)
	if m.KeyExpiresAt == nil || m.KeyExpired || m.PublicKey != old.PublicKey.String() {
		t.Fatalf("member before renewal: %+v", m)
	}
	st, err := Query(ctx, dir)
	if err != nil || st.KeyExpiresAt == nil || !st.KeyExpiresAt.Equal(*m.KeyExpiresAt) {
		t.Fatalf("status key_expires_at %v (%v), want the member's %v", st.KeyExpiresAt, err, *m.KeyExpiresAt)
	}

	// 15 hours in: more than a third of the lifetime left, nothing to do.
	w.env.Clock.Advance(15 * time.Hour)
	r.beat(t)
	if tuns, _ := r.dp.waitTunnels(t, 1); len(tuns) != 1 {
		t.Fatalf("%d tunnels 15 h into a 24 h lifetime, want the first alone", len(tuns))
	}
	if id, _ := ReadIdentity(dir); id.PublicKey != old.PublicKey {
		t.Fatal("the key was replaced with more than a third of its lifetime left")
	}

	// 17 hours in: renewed.
	w.env.Clock.Advance(2 * time.Hour)
	r.beat(t)
	all, allSess := r.dp.waitTunnels(t, 2)
	id, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.PublicKey == old.PublicKey || id.HardwareUUID != old.HardwareUUID || id.DeviceID != old.DeviceID {
		t.Fatalf("state after renewal: key %s (old %s), hardware %s, device %s", id.PublicKey, old.PublicKey, id.HardwareUUID, id.DeviceID)
	}
	c0, c1 := tuns[0].cfg, all[1].cfg
	if c1.PublicKey != id.PublicKey || c1.PrivateKey != id.PrivateKey || c1.Interface != c0.Interface ||
		c1.VirtualIP != c0.VirtualIP || c1.VirtualIPv6 != c0.VirtualIPv6 || c1.SecretKey != c0.SecretKey || c1.NetworkID != home {
		t.Fatalf("network brought up again with %+v, was %+v", c1, c0)
	}
	testenv.Eventually(t, "the old tunnel closed and its session left", func() bool {
		tuns[0].mu.Lock()
		closed := tuns[0].closed
		tuns[0].mu.Unlock()
		sess[0].mu.Lock()
		defer sess[0].mu.Unlock()
		return closed && sess[0].leaves == 1
	})
	testenv.Eventually(t, "the new session registered", func() bool {
		allSess[1].mu.Lock()
		defer allSess[1].mu.Unlock()
		return allSess[1].registers > 0
	})
	m = w.member(t, home, old.DeviceID)
	if m.PublicKey != id.PublicKey.String() || m.KeyExpired || m.KeyExpiresAt == nil ||
		!m.KeyExpiresAt.Equal(w.env.Clock.Now().UTC().Add(24*time.Hour)) {
		t.Fatalf("member after renewal: %+v (now %v)", m, w.env.Clock.Now())
	}
	// The renewed key is not renewed again at once.
	r.beat(t)
	if all, _ := r.dp.waitTunnels(t, 2); len(all) != 2 {
		t.Fatalf("%d tunnels after the next heartbeat, want 2", len(all))
	}
}

// The owner's expiry does not let the daemon renew its way back: its
// login session is revoked, the security key it logs in again with
// predates the expiry, so its renewal is refused and it stops with
// ErrKeyExpired, the networks down and its key unchanged. Started again
// with a security key created since, it registers a new key.
func TestOwnerExpiredKeyNeedsANewLogin(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	home := w.nets[0].ID
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	tuns, _ := r.dp.waitTunnels(t, 1)
	waits := r.clk.wait(t, 1)
	old, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}

	w.env.Clock.Advance(time.Second)
	if _, err := w.admin.ExpireDeviceKey(ctx, old.DeviceID); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(waits[0])
	if err := r.result(t); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("Run = %v, want ErrKeyExpired", err)
	}
	if id, _ := ReadIdentity(dir); id.PublicKey != old.PublicKey {
		t.Fatal("the state holds a new key the control plane refused")
	}
	tuns[0].mu.Lock()
	closed := tuns[0].closed
	tuns[0].mu.Unlock()
	if !closed {
		t.Fatal("the network is still up")
	}
	if m := w.member(t, home, old.DeviceID); !m.KeyExpired || m.PublicKey != old.PublicKey.String() {
		t.Fatalf("member after the refused renewal: %+v", m)
	}

	w.env.Clock.Advance(time.Second)
	k, err := w.admin.CreateSecurityKey(ctx, wire.CreateSecurityKeyRequest{Name: "after the expiry"})
	if err != nil {
		t.Fatal(err)
	}
	r2 := start(t, Config{Server: w.proxy.URL, SecurityKey: k.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	r2.dp.waitTunnels(t, 2) // up with the old key, then again with the new one
	id, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id.PublicKey == old.PublicKey {
		t.Fatal("no new key after a login with a security key created since the expiry")
	}
	if m := w.member(t, home, old.DeviceID); m.KeyExpired || m.PublicKey != id.PublicKey.String() {
		t.Fatalf("member after the new login: %+v", m)
	}
}

// A peer whose key expired is refused at its address: once the nucleus
// drops it (its leave is pushed), the daemon fetches the members' keys
// again and no longer accepts the old key there.
// expirePeer starts a daemon in a network with the exit device as its
// peer and has the owner expire the exit device's key.
func expirePeer(t *testing.T) ([]*fakeTunnel, []*fakeSession, []Peer) {
	t.Helper()
	ctx := context.Background()
	w := newWorld(t)
	home := w.nets[0].ID
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	tuns, sess := r.dp.waitTunnels(t, 1)
	exit := []Peer{{PublicKey: worldExitKey, VirtualIP: netip.MustParseAddr(w.exitIP[home])}}
	sess[0].onPeers(exit)
	if ks := tuns[0].peerKeys(); len(ks) != 1 || ks[0] != worldExitKey {
		t.Fatalf("tunnel peers %v, want the exit device", ks)
	}
	if _, err := w.admin.ExpireDeviceKey(ctx, w.exit.ID); err != nil {
		t.Fatal(err)
	}
	return tuns, sess, exit
}

func TestExpiredPeerRefused(t *testing.T) {
	tuns, sess, exit := expirePeer(t)
	sess[0].onPeers(nil) // the nucleus evicted it
	testenv.Eventually(t, "the expired key refused", func() bool {
		sess[0].onPeers(exit)
		return len(tuns[0].peerKeys()) == 0
	})
}

// A peer the owner expires is dropped through the network map even when
// the nucleus keeps announcing it (a user-hosted nucleus learns of an
// expiry only at its next poll of the control plane): the map says the
// key expired, the daemon fetches the members' keys again and the peer
// leaves the tunnel, with no new peer list from the nucleus.
func TestExpiredPeerDroppedThroughTheMap(t *testing.T) {
	tuns, _, _ := expirePeer(t)
	testenv.Eventually(t, "the expired peer dropped without a word from the nucleus", func() bool {
		return len(tuns[0].peerKeys()) == 0
	})
}
