package cli

import (
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func float(v float64) *float64 { return &v }

func TestStatusTableGolden(t *testing.T) {
	beat := time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC)
	hs := beat.Add(-12 * time.Second)
	st := daemon.Status{State: "running", Server: "https://api.example.com", DeviceID: "dev_7Hq2", DeviceName: "laptop",
		HardwareUUID: "hw-1", PublicKey: "bGFwdG9wLXB1YmxpYy1rZXktMzItYnl0ZXMtbG9uZyE=", ExitNode: false, LastHeartbeat: &beat,
		Networks: []daemon.NetworkStatus{{
			ID: "vn_home", Name: "home", Interface: "omni0", VirtualIP: "100.66.0.5/24", VirtualIPv6: "fd66:1::5/120",
			Nucleus: "nucleus.example:51820", Registered: true, DNSZone: "home.omni.internal", DNSNames: 4,
			Peers: []daemon.PeerReport{
				{PublicKey: "cm9ib3Q=", Name: "robot", DNSName: "robot.home.omni.internal", VirtualIP: "100.66.0.7", VirtualIPv6: "fd66:1::7",
					Endpoint: "192.0.2.10:41641", Path: daemon.PathDirect, LastHandshake: &hs, HandshakeAge: float(12),
					RxBytes: 1_288_490, TxBytes: 348_160},
				{PublicKey: "Z3c=", Name: "gw", DNSName: "gw.home.omni.internal", VirtualIP: "100.66.0.9",
					Endpoint: "198.51.100.1:51820", Path: daemon.PathRelayed, HandshakeAge: float(192), RxBytes: 5_368_709_120, TxBytes: 900},
				{PublicKey: "bmV3", VirtualIP: "100.66.0.12", Path: daemon.PathNone},
			},
		}, {
			ID: "vn_lab", Name: "lab", Interface: "omni1", VirtualIP: "100.70.3.2/24", Nucleus: "203.0.113.50:51820",
			Exit: "100.70.3.1", Peers: []daemon.PeerReport{},
		}},
	}
	var b strings.Builder
	renderStatus(&b, st)
	golden(t, "edge_status.golden", b.String())
}

func TestNetcheckGolden(t *testing.T) {
	rep := daemon.NetcheckReport{Networks: []daemon.NetcheckNetwork{{
		ID: "vn_home", Name: "home", Interface: "omni0", Nucleus: "nucleus.example:51820", NucleusAddr: "198.51.100.1:51820",
		Registered: true, UDP: true, Probes: 3, RTTMS: []float64{12.4, 11.9, 13.02}, LatencyMS: 11.9, KeepaliveRTTMS: 12.1,
		Observed: "203.0.113.9:61000", LocalPort: 51820, LocalEndpoints: []string{"192.168.1.10:51820"},
		NAT: daemon.NATPortRewriting, NATNote: "a NAT maps the port 51820 to 203.0.113.9:61000 and rewrites the port: if it picks a new port " +
			"for every destination (a symmetric NAT) direct paths fail and peers are relayed; one nucleus cannot tell",
	}, {
		ID: "vn_lab", Name: "lab", Interface: "omni1", Nucleus: "203.0.113.50:51820", NAT: daemon.NATUnknown,
		NATNote: "the nucleus has not reported the address it sees this device at",
		Error:   "not registered with the nucleus: it has not answered (UDP to it blocked, or it is down)",
	}}}
	var b strings.Builder
	renderNetcheck(&b, rep)
	golden(t, "edge_netcheck.golden", b.String())
}

func TestHumanUnits(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := bytesHuman(n); got != want {
			t.Errorf("bytesHuman(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s ago", 12 * time.Second: "12s ago", 192 * time.Second: "3m12s ago",
		2*time.Hour + 5*time.Minute: "2h5m ago", 50 * time.Hour: "2d ago"} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

type cliNames struct{}

func (cliNames) Set(context.Context, string, netip.Addr, string, []daemon.NameRecord) error {
	return nil
}
func (cliNames) Remove(context.Context, string, netip.Addr, string) error { return nil }

type cliPinger struct{}

func (cliPinger) Echo(context.Context, netip.Addr, netip.Addr, int) (time.Duration, error) {
	return 1300 * time.Microsecond, nil
}

// `omni edge ping` and `omni edge netcheck` against a running daemon:
// a peer by its short name, refusals with exit codes, the JSON of
// netcheck; `omni edge status` names the peer.
func TestEdgePingAndNetcheck(t *testing.T) {
	ctx := context.Background()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	admin := env.Client(u)
	n, err := admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home"})
	if err != nil {
		t.Fatal(err)
	}
	robot, err := admin.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-robot", Platform: "linux",
		PublicKey: wgkey.Key{7}.String()})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := admin.Join(ctx, n.ID, robot.ID)
	if err != nil {
		t.Fatal(err)
	}
	robotIP := netip.MustParseAddr(jr.VirtualIP)
	dir := t.TempDir()
	dctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(dctx, daemon.Config{Server: env.URL, SecurityKey: u.Key, Name: "bot", StateDir: dir}, daemon.Deps{
			Tunnels: func(_ context.Context, cfg daemon.NetworkConfig) (daemon.Tunnel, error) {
				return &cliTunnel{cfg: cfg, peers: []daemon.PeerStatus{{PublicKey: wgkey.Key{7}, VirtualIP: robotIP,
					Endpoint: netip.MustParseAddrPort("192.0.2.10:41641"), Path: daemon.PathDirect, LastHandshake: time.Now()}}}, nil
			},
			Nucleus: func(daemon.NetworkConfig, daemon.Tunnel, daemon.SessionHooks) (daemon.Session, error) {
				return cliSession{}, nil
			},
			Names:  cliNames{},
			Pinger: cliPinger{},
		})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-errc:
		case <-time.After(10 * time.Second):
			t.Error("the daemon did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := daemon.Query(ctx, dir)
		if err == nil && len(st.Networks) == 1 && len(st.Networks[0].Peers) == 1 && st.Networks[0].Peers[0].Name != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not name its peer: %+v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, out, errs := run(t, "edge", "status", "--state", dir)
	if code != 0 || !strings.Contains(out, "robot  ") || !strings.Contains(out, "home.omni.internal") {
		t.Fatalf("status table lacks the peer's name or the zone: %d %s %s", code, out, errs)
	}

	code, out, errs = run(t, "edge", "ping", "robot", "--count", "2", "--interval", "100ms", "--state", dir)
	want := "pong from robot (" + robotIP.String() + ") via 192.0.2.10:41641 (direct) in 1.30ms"
	if code != 0 || strings.Count(out, want) != 2 || !strings.Contains(out, "2 sent, 2 received, 0% loss") {
		t.Fatalf("ping: %d\n%s\n%s", code, out, errs)
	}
	code, _, errs = run(t, "edge", "ping", "--state", dir, "--count", "1", "nobody")
	if code != 1 || !strings.Contains(errs, `unknown peer "nobody"`) {
		t.Fatalf("ping of an unknown name: %d %s", code, errs)
	}
	for _, args := range [][]string{{"robot", "--count", "0"}, {"robot", "--count", "101"}, {"robot", "--timeout", "1m"}, {}, {"robot", "extra"}} {
		if code, _, errs := run(t, append([]string{"edge", "ping", "--state", dir}, args...)...); code != 2 {
			t.Errorf("ping %v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	if code, _, errs := run(t, "edge", "ping", "robot", "--state", t.TempDir()+"/missing"); code != 1 || !strings.Contains(errs, "no edge daemon is running") {
		t.Fatalf("ping without a daemon: %d %s", code, errs)
	}

	code, out, errs = run(t, "edge", "netcheck", "--json", "--state", dir)
	var rep daemon.NetcheckReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Networks) != 1 || rep.Networks[0].Name != "home" ||
		rep.Networks[0].NAT != daemon.NATUnknown || !strings.Contains(rep.Networks[0].Error, "cannot probe") {
		t.Fatalf("netcheck --json: %d %s %s", code, out, errs)
	}
	code, out, _ = run(t, "edge", "netcheck", "--state", dir)
	if code != 0 || !strings.Contains(out, "network home") || !strings.Contains(out, "NAT:      unknown") {
		t.Fatalf("netcheck: %d %s", code, out)
	}
}
