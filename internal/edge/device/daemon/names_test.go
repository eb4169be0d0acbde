package daemon

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// fakeNames records what the daemon serves.
type fakeNames struct {
	mu      sync.Mutex
	zones   map[string][]NameRecord // by zone
	addrs   map[string]netip.Addr   // zone → the tunnel address it is served on
	removed []string
}

func (f *fakeNames) Set(_ context.Context, _ string, addr netip.Addr, zone string, recs []NameRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.zones[zone], f.addrs[zone] = recs, addr
	return nil
}

func (f *fakeNames) Remove(_ context.Context, _ string, _ netip.Addr, zone string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.zones, zone)
	f.removed = append(f.removed, zone)
	return nil
}

func (f *fakeNames) lookup(zone, name string) (NameRecord, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.zones[zone] {
		if r.Name == name {
			return r, true
		}
	}
	return NameRecord{}, false
}

// The daemon serves every joined network's names on its tunnel address,
// follows a rename within seconds (the control plane's long poll), and
// stops serving a network it leaves.
func TestDaemonServesNames(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	names := &fakeNames{zones: map[string][]NameRecord{}, addrs: map[string]netip.Addr{}}
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "Robot 7", StateDir: t.TempDir()},
		func(d *Deps) { d.Names = names })
	tuns, _ := r.dp.waitTunnels(t, 2)
	defer func() {
		if t.Failed() {
			t.Log(r.logs.String())
		}
	}()
	var home *fakeTunnel
	for _, tu := range tuns {
		if tu.cfg.NetworkID == w.nets[0].ID {
			home = tu
		}
	}
	testenv.Eventually(t, "both members' names served in home.omni.internal", func() bool {
		self, ok1 := names.lookup("home.omni.internal", "robot-7.home.omni.internal")
		exit, ok2 := names.lookup("home.omni.internal", "exit.home.omni.internal")
		return ok1 && ok2 && self.IPv4 == home.cfg.VirtualIP.Addr() && self.IPv6 == home.cfg.VirtualIPv6.Addr() &&
			exit.IPv4.String() == w.exitIP[w.nets[0].ID]
	})
	testenv.Eventually(t, "the other network's zone served too", func() bool {
		names.mu.Lock()
		defer names.mu.Unlock()
		_, lab := names.zones["lab.omni.internal"]
		return lab
	})
	names.mu.Lock()
	served := names.addrs["home.omni.internal"]
	names.mu.Unlock()
	if served != home.cfg.VirtualIP.Addr() {
		t.Fatalf("home served on %v (tunnel %v)", served, home.cfg.VirtualIP)
	}

	if _, err := w.admin.RenameDevice(ctx, w.exit.ID, "Gateway"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testenv.Eventually(t, "the renamed member's new name", func() bool {
		_, ok := names.lookup("home.omni.internal", "gateway.home.omni.internal")
		_, old := names.lookup("home.omni.internal", "exit.home.omni.internal")
		return ok && !old
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the rename took %v to reach the daemon", d)
	}

	// The network's label changes: the old zone goes, the new one comes.
	label := "house"
	if _, err := w.admin.UpdateNetwork(ctx, w.nets[0].ID, wire.UpdateNetworkRequest{DNSName: &label}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the zone follows the network's label", func() bool {
		_, ok := names.lookup("house.omni.internal", "gateway.house.omni.internal")
		names.mu.Lock()
		defer names.mu.Unlock()
		_, old := names.zones["home.omni.internal"]
		return ok && !old
	})

	r.cancel()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}
	names.mu.Lock()
	defer names.mu.Unlock()
	if len(names.zones) != 0 {
		t.Fatalf("zones still served after the daemon stopped: %v (removed %s)", names.zones, strings.Join(names.removed, ", "))
	}
}
