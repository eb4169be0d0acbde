package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

func (f *fakeTunnel) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (s *fakeSession) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaves
}

func (p *fakeDataPlane) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tunnels)
}

func isMember(t *testing.T, w *world, networkID, deviceID string) bool {
	t.Helper()
	ms, err := w.admin.Members(context.Background(), networkID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.DeviceID == deviceID {
			return true
		}
	}
	return false
}

// A device the owner removes from a network stays removed: neither the
// nucleus's REKEY, nor the heartbeat, nor following the account's
// networks, nor a restart joins it again; the daemon takes that network
// down (logged once) and keeps the others. Only an explicit --network
// joins it again.
func TestRemovedDeviceStaysRemoved(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir}
	r := start(t, cfg)
	tuns, sess := r.dp.waitTunnels(t, 2)
	waits := r.clk.wait(t, 1)
	defer func() {
		if t.Failed() {
			t.Log(r.logs.String())
		}
	}()
	id, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	byNet := map[string]int{tuns[0].cfg.NetworkID: 0, tuns[1].cfg.NetworkID: 1}
	home, lab := w.nets[0].ID, w.nets[1].ID
	h, l := byNet[home], byNet[lab]

	// Removed from home; the nucleus's REKEY (to the members) reaches the
	// daemon as well.
	if err := w.admin.Leave(ctx, home, id.DeviceID); err != nil {
		t.Fatal(err)
	}
	sess[h].onRekey()
	testenv.Eventually(t, "home's tunnel closed and its nucleus left", func() bool {
		return tuns[h].isClosed() && sess[h].left() == 1
	})
	if isMember(t, w, home, id.DeviceID) {
		t.Fatal("the rekey joined the removed device again")
	}
	if tuns[l].isClosed() {
		t.Fatal("the other network went down")
	}

	// Removed from lab without a REKEY: the heartbeat no longer lists the
	// network. Following the account's networks does not join either.
	if err := w.admin.Leave(ctx, lab, id.DeviceID); err != nil {
		t.Fatal(err)
	}
	for range 2 * SyncEvery {
		r.clk.Advance(waits[0])
		waits = r.clk.wait(t, 1)
	}
	testenv.Eventually(t, "lab's tunnel closed", func() bool { return tuns[l].isClosed() && sess[l].left() == 1 })
	for _, nid := range []string{home, lab} {
		if isMember(t, w, nid, id.DeviceID) {
			t.Fatalf("the daemon joined %s again after the removal", nid)
		}
	}
	if n := r.dp.count(); n != 2 {
		t.Fatalf("%d tunnels created, want no new one", n)
	}
	if c := strings.Count(r.logs.String(), "no longer a member of the network"); c != 2 {
		t.Fatalf("the removal was logged %d times for two networks:\n%s", c, r.logs.String())
	}
	if st, err := Query(ctx, dir); err != nil || len(st.Networks) != 0 {
		t.Fatalf("status %+v %v, want no network", st, err)
	}

	// A restart following the account does not join them again.
	r.cancel()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	cfg.SecurityKey = ""
	r = start(t, cfg)
	r.clk.wait(t, 1)
	if n := r.dp.count(); n != 0 {
		t.Fatalf("a restart brought up %d networks the device was removed from", n)
	}
	for _, nid := range []string{home, lab} {
		if isMember(t, w, nid, id.DeviceID) {
			t.Fatalf("the restart joined %s again", nid)
		}
	}
	// A network created later is still joined.
	third, err := w.admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "field"})
	if err != nil {
		t.Fatal(err)
	}
	waits = r.clk.wait(t, 1)
	for range SyncEvery {
		r.clk.Advance(waits[0])
		waits = r.clk.wait(t, 1)
	}
	all, _ := r.dp.waitTunnels(t, 1)
	if all[0].cfg.NetworkID != third.ID || len(all) != 1 {
		t.Fatalf("tunnels %+v, want only the new network", all[0].cfg)
	}

	// An explicit --network joins again.
	r.cancel()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	cfg.Networks = []string{home}
	r = start(t, cfg)
	again, _ := r.dp.waitTunnels(t, 1)
	if again[0].cfg.NetworkID != home || !isMember(t, w, home, id.DeviceID) {
		t.Fatal("an explicit --network did not join again")
	}
}
