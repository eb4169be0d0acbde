package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

const (
	pathLogin     = "/api/v2/auth/login/security-key"
	pathRefresh   = "/api/v2/auth/refresh"
	pathHeartbeat = "/api/v2/devices/heartbeat"
	pathDevices   = "/api/v2/devices"
)

type world struct {
	env    *edgetest.Env
	user   edgetest.User
	admin  *client.Client
	proxy  *proxy
	nets   []wire.Network
	exit   wire.Device
	exitIP map[string]string // network id -> exit device's virtual IPv4
}

// worldExitKey is the device key of the world's exit device.
var worldExitKey = wgkey.Key{1, 2, 3}

// newWorld starts a control plane with one user, two networks and an
// exit-capable device that is a member of both.
func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("pro")
	w := &world{env: env, user: u, admin: env.Client(u), exitIP: map[string]string{}}
	w.proxy = newProxy(t, env.URL)
	for _, name := range []string{"home", "lab"} {
		n, err := w.admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		w.nets = append(w.nets, n)
	}
	var err error
	w.exit, err = w.admin.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "exit", HardwareUUID: "hw-exit", Platform: "linux",
		PublicKey: worldExitKey.String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range w.nets {
		jr, err := w.admin.Join(ctx, n.ID, w.exit.ID)
		if err != nil {
			t.Fatal(err)
		}
		w.exitIP[n.ID] = jr.VirtualIP
		yes := true
		if _, err := w.admin.UpdateMember(ctx, n.ID, w.exit.ID, wire.UpdateMemberRequest{IsExitNode: &yes}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.admin.Heartbeat(ctx, "hw-exit", true); err != nil {
		t.Fatal(err)
	}
	return w
}

type running struct {
	cancel context.CancelFunc
	errc   chan error
	dp     *fakeDataPlane
	clk    *fakeClock
	logs   *syncBuffer
}

type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func start(t *testing.T, cfg Config, with ...func(*Deps)) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, errc: make(chan error, 1), dp: &fakeDataPlane{}, clk: newFakeClock(),
		logs: &syncBuffer{mu: make(chan struct{}, 1)}}
	deps := r.dp.deps(r.clk)
	deps.Log = slog.New(slog.NewTextHandler(r.logs, nil))
	for _, f := range with {
		f(&deps)
	}
	go func() { r.errc <- Run(ctx, cfg, deps) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.errc:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func (r *running) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.errc:
		r.errc <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), want)
	}
}

func TestDaemonLifecycle(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "state")
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", ExitNode: true, StateDir: dir})

	// No --network: every network of the user is joined, one tunnel each.
	tuns, sess := r.dp.waitTunnels(t, 2)
	waits := r.clk.wait(t, 1)
	if len(waits) != 1 || waits[0] < 27*time.Second || waits[0] > 33*time.Second {
		t.Fatalf("after the first heartbeat the daemon waits %v; want one wait of 30 s ±10%%", waits)
	}
	if n := w.proxy.count(pathHeartbeat); n != 1 {
		t.Fatalf("heartbeats before the clock moved: %d, want 1", n)
	}

	id, err := ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, IdentityFile), 0o600)
	checkMode(t, filepath.Join(dir, SocketFile), 0o600)
	raw, _ := os.ReadFile(filepath.Join(dir, IdentityFile))
	if !strings.Contains(string(raw), id.RefreshToken) || id.RefreshToken == "" || id.Server != w.proxy.URL {
		t.Fatalf("the refresh token is not saved for the server: %+v", id)
	}

	devs, err := w.admin.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var robot wire.Device
	for _, d := range devs {
		if d.HardwareUUID == id.HardwareUUID {
			robot = d
		}
	}
	if robot.ID == "" || robot.Name != "robot" || robot.ID != id.DeviceID || !robot.ExitNodeConsent || !robot.Online {
		t.Fatalf("device not registered as expected (hardware uuid, name, exit consent, online): %+v among %+v", robot, devs)
	}

	for i, tun := range tuns {
		c := tun.cfg
		jr, err := w.admin.Join(ctx, c.NetworkID, robot.ID) // idempotent: the same answer
		if err != nil {
			t.Fatal(err)
		}
		if c.Interface != "omni"+string(rune('0'+i)) || c.MTU != 1420 || c.DeviceID != robot.ID || !c.ServeExit {
			t.Errorf("tunnel %d config: %+v", i, c)
		}
		if c.VirtualIP.Addr().String() != jr.VirtualIP || c.VirtualIP.Bits() != 24 ||
			c.VirtualIPv6.Addr().String() != jr.VirtualIPv6 || c.VirtualIPv6.Bits() != jr.SubnetPrefixV6 {
			t.Errorf("tunnel %d addresses %v %v, join says %s/%s %s/%d", i, c.VirtualIP, c.VirtualIPv6, jr.VirtualIP, jr.SubnetMask, jr.VirtualIPv6, jr.SubnetPrefixV6)
		}
		if c.SecretKey != jr.SecretKey || c.SecretKey == "" || c.Nucleus != jr.Server.Host || c.Name != jr.Cluster {
			t.Errorf("tunnel %d secret/nucleus/name differ from the join answer", i)
		}
		if c.NucleusKey.IsZero() || c.NucleusKey.String() != jr.Server.PublicKey {
			t.Errorf("tunnel %d nucleus key %v, the join answer names %q", i, c.NucleusKey, jr.Server.PublicKey)
		}
		if c.PrivateKey != id.PrivateKey || c.PublicKey != id.PublicKey {
			t.Errorf("tunnel %d does not use the saved key pair", i)
		}
	}
	testenv.Eventually(t, "nucleus sessions registered", func() bool {
		for _, s := range sess {
			s.mu.Lock()
			ok := s.registers == 1 && s.running
			s.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})

	// Heartbeats follow the clock.
	for beat := 2; beat <= 3; beat++ {
		r.clk.Advance(waits[0])
		waits = r.clk.wait(t, 1)
		if n := w.proxy.count(pathHeartbeat); n != beat {
			t.Fatalf("heartbeats after %d intervals: %d", beat-1, n)
		}
	}

	// The user selects the exit device in the first network: the next
	// heartbeat reaches that network's tunnel and only that one.
	home := tuns[0].cfg.NetworkID
	if _, err := w.admin.UpdateMember(ctx, home, robot.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(w.exit.ID)}); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(waits[0])
	waits = r.clk.wait(t, 1)
	if got, n := tuns[0].exit(); got.String() != w.exitIP[home] || n != 1 {
		t.Fatalf("tunnel exit %v after %d calls, want %s", got, n, w.exitIP[home])
	}
	if _, n := tuns[1].exit(); n != 0 {
		t.Fatalf("the other network's tunnel got %d exit changes", n)
	}
	// An unchanged selection is not applied again.
	r.clk.Advance(waits[0])
	waits = r.clk.wait(t, 1)
	if _, n := tuns[0].exit(); n != 1 {
		t.Fatalf("unchanged exit applied again: %d calls", n)
	}

	// Peers pushed by the nucleus reach the tunnel, without this device
	// and without addresses outside the network.
	exitKey := worldExitKey
	exitAddr := netip.MustParseAddr(w.exitIP[home])
	sess[0].onPeers([]Peer{
		{PublicKey: exitKey, VirtualIP: exitAddr, Endpoint: netip.MustParseAddrPort("198.51.100.7:41641")},
		{PublicKey: id.PublicKey, VirtualIP: tuns[0].cfg.VirtualIP.Addr()},
		{PublicKey: wgkey.Key{9}, VirtualIP: netip.MustParseAddr("10.9.9.9")},
	})
	tuns[0].mu.Lock()
	got := tuns[0].peers
	tuns[0].status.Peers = []PeerStatus{{PublicKey: exitKey, VirtualIP: exitAddr, Endpoint: netip.MustParseAddrPort("198.51.100.7:41641"),
		Path: PathDirect, LastHandshake: r.clk.Now().Add(-5 * time.Second), RxBytes: 1000, TxBytes: 2000}}
	tuns[0].mu.Unlock()
	if len(got) != 1 || got[0].PublicKey != exitKey {
		t.Fatalf("tunnel peers %+v, want only the exit device", got)
	}

	// Status over the control socket.
	st, err := Query(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "running" || st.DeviceID != robot.ID || st.PublicKey != id.PublicKey.String() || !st.ExitNode ||
		st.LastHeartbeat == nil || len(st.Networks) != 2 {
		t.Fatalf("status %+v", st)
	}
	n0 := st.Networks[0]
	if n0.ID != home || n0.Interface != "omni0" || n0.VirtualIP != tuns[0].cfg.VirtualIP.String() ||
		n0.VirtualIPv6 != tuns[0].cfg.VirtualIPv6.String() || !n0.Registered || n0.Exit != w.exitIP[home] || len(n0.Peers) != 1 {
		t.Fatalf("network status %+v", n0)
	}
	p := n0.Peers[0]
	if p.Path != PathDirect || p.HandshakeAge == nil || *p.HandshakeAge != 5 || p.RxBytes != 1000 || p.TxBytes != 2000 ||
		p.VirtualIP != w.exitIP[home] || p.PublicKey != exitKey.String() || p.Endpoint != "198.51.100.7:41641" {
		t.Fatalf("peer status %+v", p)
	}
	if strings.Contains(w.proxy.URL, id.PrivateKey.String()) || strings.Contains(r.logs.String(), id.PrivateKey.String()) ||
		strings.Contains(r.logs.String(), tuns[0].cfg.SecretKey) {
		t.Fatal("the private key or the network secret was logged")
	}

	// Clearing the selection restores normal routing.
	if _, err := w.admin.UpdateMember(ctx, home, robot.ID, wire.UpdateMemberRequest{ExitNode: wire.Null()}); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(waits[0])
	r.clk.wait(t, 1)
	if got, n := tuns[0].exit(); got.IsValid() || n != 2 {
		t.Fatalf("cleared exit: tunnel has %v after %d calls", got, n)
	}

	// down stops Run cleanly: sessions left, tunnels closed, state kept.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := Down(dctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := r.result(t); err != nil {
		t.Fatalf("Run after down: %v", err)
	}
	for i := range tuns {
		tuns[i].mu.Lock()
		closed := tuns[i].closed
		tuns[i].mu.Unlock()
		sess[i].mu.Lock()
		leaves := sess[i].leaves
		sess[i].mu.Unlock()
		if !closed || leaves != 1 {
			t.Errorf("network %d after down: closed=%v leaves=%d", i, closed, leaves)
		}
	}
	if _, err := Query(ctx, dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("status after down: %v, want ErrNotRunning", err)
	}
	if id2, err := ReadIdentity(dir); err != nil || id2.PrivateKey != id.PrivateKey || id2.DeviceID != robot.ID {
		t.Fatalf("state not kept: %v", err)
	}
}

func TestRestartReusesIdentity(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := t.TempDir()
	net := w.nets[1].ID
	cfg := Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", Networks: []string{net}, StateDir: dir}
	r := start(t, cfg)
	tuns, _ := r.dp.waitTunnels(t, 1)
	r.clk.wait(t, 1)
	first := tuns[0].cfg
	if first.NetworkID != net {
		t.Fatalf("joined %s, want only --network %s", first.NetworkID, net)
	}
	id1, _ := ReadIdentity(dir)
	r.cancel()
	if err := r.result(t); err != nil {
		t.Fatal(err)
	}

	// Second start without the security key: the saved refresh token logs in.
	cfg.SecurityKey = ""
	r = start(t, cfg)
	tuns, _ = r.dp.waitTunnels(t, 1)
	r.clk.wait(t, 1)
	second := tuns[0].cfg
	id2, _ := ReadIdentity(dir)
	if second.PublicKey != first.PublicKey || id2.HardwareUUID != id1.HardwareUUID || second.DeviceID != first.DeviceID ||
		second.VirtualIP != first.VirtualIP || second.VirtualIPv6 != first.VirtualIPv6 {
		t.Fatalf("restart changed the identity or addresses: %+v -> %+v", first, second)
	}
	if id2.RefreshToken == id1.RefreshToken {
		t.Fatal("the rotated refresh token was not saved")
	}
	if n := w.proxy.count(pathLogin); n != 1 {
		t.Fatalf("security-key logins: %d, want 1 (the restart uses the saved token)", n)
	}
	if n := w.proxy.count(pathRefresh); n < 1 {
		t.Fatal("the restart did not refresh the saved token")
	}
	devs, err := w.admin.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 { // the exit device and this one
		t.Fatalf("%d devices after a restart, want 2: %+v", len(devs), devs)
	}
}

func TestBackoffOn429(t *testing.T) {
	w := newWorld(t)
	w.proxy.rejectNext(pathLogin, 2)
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Networks: []string{w.nets[0].ID}, StateDir: t.TempDir()})
	for i := 1; i <= 2; i++ {
		waits := r.clk.wait(t, 1)
		if len(waits) != 1 || waits[0] < 7*time.Second || waits[0] > 7*time.Second+700*time.Millisecond {
			t.Fatalf("after 429 #%d the daemon waits %v; want Retry-After 7 s plus at most 10%%", i, waits)
		}
		if n := w.proxy.count(pathLogin); n != i {
			t.Fatalf("login attempts before the back-off ended: %d, want %d", n, i)
		}
		if n := w.proxy.count(pathDevices); n != 0 {
			t.Fatal("registered before logging in")
		}
		r.clk.Advance(waits[0])
	}
	r.dp.waitTunnels(t, 1)
	if n := w.proxy.count(pathLogin); n != 3 {
		t.Fatalf("login attempts: %d, want 3", n)
	}

	// A 429 on the heartbeat waits as told, then heartbeats resume.
	waits := r.clk.wait(t, 1)
	w.proxy.rejectNext(pathHeartbeat, 1)
	r.clk.Advance(waits[0])
	testenv.Eventually(t, "the rejected heartbeat", func() bool { return w.proxy.count(pathHeartbeat) == 2 })
	waits = r.clk.wait(t, 1)
	if waits[0] < 7*time.Second || waits[0] > 7*time.Second+700*time.Millisecond {
		t.Fatalf("after a 429 heartbeat the daemon waits %v", waits[0])
	}
	r.clk.Advance(waits[0])
	r.clk.wait(t, 1)
	if n := w.proxy.count(pathHeartbeat); n != 3 {
		t.Fatalf("heartbeats: %d, want 3", n)
	}
}

func TestRunRefusals(t *testing.T) {
	ctx := context.Background()
	dp := &fakeDataPlane{}
	if err := Run(ctx, Config{Server: "http://127.0.0.1:1", StateDir: t.TempDir()}, Deps{}); !errors.Is(err, ErrNoDataPlane) {
		t.Fatalf("without a data plane: %v", err)
	}
	dir := t.TempDir()
	if err := Run(ctx, Config{Server: "http://127.0.0.1:1", StateDir: dir}, dp.deps(newFakeClock())); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("without credentials: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SocketFile)); !os.IsNotExist(err) {
		t.Fatal("the control socket outlived Run")
	}

	// A revoked key is a clear, final error, not endless retries.
	w := newWorld(t)
	keys, err := w.admin.SecurityKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	if err := w.admin.RevokeSecurityKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	err = Run(ctx, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, StateDir: t.TempDir()}, dp.deps(newFakeClock()))
	if client.StatusOf(err) != 401 {
		t.Fatalf("revoked key: %v", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Networks: []string{w.nets[0].ID}, StateDir: dir})
	r.dp.waitTunnels(t, 1)
	dp := &fakeDataPlane{}
	err := Run(context.Background(), Config{Server: w.proxy.URL, SecurityKey: w.user.Key, StateDir: dir}, dp.deps(newFakeClock()))
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second daemon on one state dir: %v", err)
	}
	if _, err := Query(context.Background(), dir); err != nil {
		t.Fatalf("the first daemon lost its socket: %v", err)
	}
}

// Without --network the daemon follows the account: a network created
// while it runs is joined within SyncEvery heartbeats, a deleted one is
// torn down, and a new interface takes the lowest free omniN.
func TestDaemonFollowsTheAccountsNetworks(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: t.TempDir()})
	tuns, sess := r.dp.waitTunnels(t, 2)
	waits := r.clk.wait(t, 1)
	beat := func() {
		t.Helper()
		r.clk.Advance(waits[0])
		waits = r.clk.wait(t, 1)
	}

	third, err := w.admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "field"})
	if err != nil {
		t.Fatal(err)
	}
	for range SyncEvery {
		beat()
	}
	all, _ := r.dp.waitTunnels(t, 3)
	if c := all[2].cfg; c.NetworkID != third.ID || c.Interface != "omni2" {
		t.Fatalf("new network's tunnel: %+v", c)
	}

	gone, kept := 0, 1
	if tuns[1].cfg.NetworkID == w.nets[0].ID {
		gone, kept = 1, 0
	}
	if err := w.admin.DeleteNetwork(ctx, w.nets[0].ID); err != nil {
		t.Fatal(err)
	}
	for range SyncEvery {
		beat()
	}
	defer func() {
		if t.Failed() {
			t.Log(r.logs.String())
		}
	}()
	testenv.Eventually(t, "the deleted network's tunnel closed and its nucleus left", func() bool {
		tuns[gone].mu.Lock()
		closed := tuns[gone].closed
		tuns[gone].mu.Unlock()
		sess[gone].mu.Lock()
		leaves := sess[gone].leaves
		sess[gone].mu.Unlock()
		return closed && leaves == 1
	})
	tuns[kept].mu.Lock()
	keptClosed := tuns[kept].closed
	tuns[kept].mu.Unlock()
	if keptClosed {
		t.Fatal("a network that still exists was torn down")
	}
	fourth, err := w.admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "yard"})
	if err != nil {
		t.Fatal(err)
	}
	for range SyncEvery {
		beat()
	}
	all, _ = r.dp.waitTunnels(t, 4)
	if c := all[3].cfg; c.NetworkID != fourth.ID || c.Interface != tuns[gone].cfg.Interface {
		t.Fatalf("the freed omni0 was not reused: %+v", c)
	}
}
