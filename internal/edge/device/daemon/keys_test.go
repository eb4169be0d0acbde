package daemon

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

func (f *fakeTunnel) peerKeys() []wgkey.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []wgkey.Key
	for _, p := range f.peers {
		ks = append(ks, p.PublicKey)
	}
	return ks
}

func (f *fakeTunnel) lastSecret() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.secrets) == 0 {
		return ""
	}
	return f.secrets[len(f.secrets)-1]
}

func (s *fakeSession) lastSecret() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.secrets) == 0 {
		return ""
	}
	return s.secrets[len(s.secrets)-1]
}

// The daemon registers its WireGuard key, and accepts a peer only under
// the key the control plane binds to the peer's address: a peer reported
// at a member's address with another key is refused; a member that joined
// after the daemon started is accepted once its key is fetched.
func TestPeerBoundToAnotherKeyRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	home := w.nets[0].ID
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	tuns, sess := r.dp.waitTunnels(t, 1)
	id, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := w.admin.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if d.HardwareUUID == id.HardwareUUID && d.PublicKey != id.PublicKey.String() {
			t.Fatalf("the daemon registered key %q, want its own %s", d.PublicKey, id.PublicKey)
		}
	}

	exitAddr := netip.MustParseAddr(w.exitIP[home])
	evil := wgkey.Key{66}
	sess[0].onPeers([]Peer{{PublicKey: evil, VirtualIP: exitAddr}})
	if ks := tuns[0].peerKeys(); len(ks) != 0 {
		t.Fatalf("tunnel peers %v: a key not bound to %v was accepted", ks, exitAddr)
	}
	sess[0].onPeers([]Peer{{PublicKey: worldExitKey, VirtualIP: exitAddr}, {PublicKey: evil, VirtualIP: exitAddr}})
	if ks := tuns[0].peerKeys(); len(ks) != 1 || ks[0] != worldExitKey {
		t.Fatalf("tunnel peers %v, want the exit device alone", ks)
	}

	// A member that joins later.
	newKey := wgkey.Key{77}
	d, err := w.admin.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "late", HardwareUUID: "hw-late", PublicKey: newKey.String()})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := w.admin.Join(ctx, home, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	sess[0].onPeers([]Peer{{PublicKey: worldExitKey, VirtualIP: exitAddr}, {PublicKey: newKey, VirtualIP: netip.MustParseAddr(jr.VirtualIP)}})
	testenv.Eventually(t, "the new member accepted", func() bool { return len(tuns[0].peerKeys()) == 2 })
}

// After a member leaves, the daemon switches its tunnel and nucleus
// session to the network's new secret: at once on the nucleus's REKEY,
// and on the heartbeat's secret version when the REKEY was missed.
func TestSecretRotationFollowed(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	home := w.nets[0].ID
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir, Networks: []string{home}})
	tuns, sess := r.dp.waitTunnels(t, 1)
	r.clk.wait(t, 1) // first heartbeat done
	first := tuns[0].cfg.SecretKey

	leaver := func(hw string) {
		d, err := w.admin.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: hw, HardwareUUID: hw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.admin.Join(ctx, home, d.ID); err != nil {
			t.Fatal(err)
		}
		if err := w.admin.Leave(ctx, home, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	current := func() wire.JoinResponse {
		jr, err := w.admin.Join(ctx, home, w.exit.ID)
		if err != nil {
			t.Fatal(err)
		}
		return jr
	}

	leaver("hw-gone-1")
	second := current()
	if second.SecretKey == first || second.SecretVersion != 2 {
		t.Fatalf("secret did not rotate: version %d", second.SecretVersion)
	}
	sess[0].onRekey()
	testenv.Eventually(t, "tunnel and session on the new secret", func() bool {
		return tuns[0].lastSecret() == second.SecretKey && sess[0].lastSecret() == second.SecretKey
	})
	if st, err := Query(ctx, dir); err != nil || st.Networks[0].SecretVersion != 2 {
		t.Fatalf("status %+v %v, want secret version 2", st, err)
	}

	// No REKEY this time: the next heartbeat reports version 3.
	leaver("hw-gone-2")
	third := current()
	waits := r.clk.wait(t, 1)
	r.clk.Advance(waits[0])
	testenv.Eventually(t, "the heartbeat's version followed", func() bool {
		return tuns[0].lastSecret() == third.SecretKey && sess[0].lastSecret() == third.SecretKey
	})
}
