package hosted_test

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/hosted"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

const wait = 10 * time.Second

// runNucleus starts a hosted nucleus on a loopback socket and returns it
// with its address once it has announced itself.
func runNucleus(t *testing.T, env *edgetest.Env, key, public string, pc net.PacketConn) (*hosted.Nucleus, <-chan error, context.CancelFunc) {
	t.Helper()
	n, err := hosted.New(hosted.Config{SecurityKey: key, Public: public, Name: "lab", Country: "DE", Poll: 50 * time.Millisecond, StateDir: t.TempDir()},
		hosted.Deps{API: client.New(env.URL, env.Server.Client())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() { done <- n.Run(ctx, pc); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(wait):
			t.Error("hosted nucleus did not stop")
		}
	})
	return n, done, cancel
}

func listen(t *testing.T) (net.PacketConn, netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// device is a member's nucleus client on its own loopback socket.
type device struct {
	c     *nucleus.Client
	mu    sync.Mutex
	peers []nucleus.Peer
}

// devicePriv is the private key of test device id, deviceKey its public
// key.
func devicePriv(id byte) *ecdh.PrivateKey {
	seed := sha256.Sum256([]byte{'h', id})
	k, err := nucleus.NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
}

func deviceKey(id byte) wgkey.Key { return nucleus.PublicKeyOf(devicePriv(id)) }

func newDevice(t *testing.T, j wire.JoinResponse, id byte, server netip.AddrPort) *device {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &device{}
	serverKey, err := base64.StdEncoding.DecodeString(j.Server.PublicKey)
	if err != nil || len(serverKey) != 32 {
		t.Fatalf("the join answer names no nucleus key: %+v", j.Server)
	}
	c, err := nucleus.NewClient(nucleus.ClientConfig{
		NetworkID: j.NetworkID, Secret: []byte(j.SecretKey), PrivateKey: devicePriv(id), ServerKey: wgkey.Key(serverKey), Server: server,
		IP4: netip.MustParseAddr(j.VirtualIP), IP6: netip.MustParseAddr(j.VirtualIPv6),
		Send: func(b []byte, to netip.AddrPort) error {
			_, err := conn.WriteToUDPAddrPort(b, to)
			return err
		},
		Keepalive: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.OnPeers(func(ps []nucleus.Peer) { d.mu.Lock(); d.peers = ps; d.mu.Unlock() })
	d.c = c
	go func() {
		buf := make([]byte, nucleus.MaxFrame+1)
		for range 1_000_000 {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if nucleus.IsSignal(buf[:n]) {
				c.Handle(buf[:n], from)
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx)
	return d
}

func (d *device) sees(ip string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.peers {
		if p.IP4.String() == ip {
			return true
		}
	}
	return false
}

func TestHostedNucleusServesTheAccountsNetworks(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	c := env.Client(u)
	ctx := context.Background()

	pc, at := listen(t)
	n, _, _ := runNucleus(t, env, u.Key, at.String(), pc)
	testenv.Eventually(t, "the user-server entry", func() bool { return n.ServerID() != "" })
	list, err := c.UserServers(ctx)
	if err != nil || len(list) != 1 || list[0].ID != n.ServerID() || list[0].Host != at.String() || list[0].Name != "lab" || list[0].Country != "DE" {
		t.Fatalf("user servers = %+v, %v", list, err)
	}

	// A network created afterwards on this server is served at once.
	vn, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home", ServerID: n.ServerID()})
	if err != nil {
		t.Fatal(err)
	}
	join := func(hw string, id byte) (wire.Device, wire.JoinResponse) {
		d, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: hw, HardwareUUID: hw, Platform: "linux", PublicKey: deviceKey(id).String()})
		if err != nil {
			t.Fatal(err)
		}
		j, err := c.Join(ctx, vn.ID, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Server.Host != at.String() {
			t.Fatalf("join points at %q, want the hosted nucleus %s", j.Server.Host, at)
		}
		return d, j
	}
	_, ja := join("hw-a", 1)
	db, jb := join("hw-b", 2)
	a, b := newDevice(t, ja, 1, at), newDevice(t, jb, 2, at)
	testenv.Eventually(t, "A and B to see each other", func() bool { return a.sees(jb.VirtualIP) && b.sees(ja.VirtualIP) })

	// A holder of the secret that is not a member cannot register, nor
	// can one with a key not bound to the address it claims.
	fake := ja
	fake.VirtualIP, fake.VirtualIPv6 = "100.64.250.250", "fd00::250"
	intruder := newDevice(t, fake, 3, at)
	impostor := newDevice(t, jb, 4, at) // B's address, its own key
	time.Sleep(300 * time.Millisecond)
	if intruder.c.Status().Registered || a.sees(fake.VirtualIP) || impostor.c.Status().Registered {
		t.Fatal("a non-member registered with the hosted nucleus")
	}

	// B leaves: the next poll evicts it, A is told, and A is told to fetch
	// the network's new secret.
	rekeys := make(chan uint32, 4)
	a.c.OnRekey(func(v uint32) { rekeys <- v })
	if err := c.Leave(ctx, vn.ID, db.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "A to drop B", func() bool { return !a.sees(jb.VirtualIP) })
	if st := n.Server().Stats(); st.PerNetwork[vn.ID].Peers != 1 {
		t.Fatalf("nucleus still holds %d peers", st.PerNetwork[vn.ID].Peers)
	}
	select {
	case v := <-rekeys:
		if v != 2 {
			t.Errorf("REKEY version %d, want 2", v)
		}
	case <-time.After(wait):
		t.Fatal("A was not told about the new secret")
	}
}

func TestHostedNucleusKeepsItsEntryCurrent(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	c := env.Client(u)
	ctx := context.Background()
	old, err := c.CreateUserServer(ctx, wire.UserServerRequest{Name: "lab", Host: "old.example.com:51820", Country: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	pc, at := listen(t)
	n, _, _ := runNucleus(t, env, u.Key, at.String(), pc)
	testenv.Eventually(t, "the entry", func() bool { return n.ServerID() != "" })
	if n.ServerID() != old.ID {
		t.Fatalf("took %s, want the existing entry %s", n.ServerID(), old.ID)
	}
	got, err := c.UserServers(ctx)
	if err != nil || len(got) != 1 || got[0].Host != at.String() || got[0].PublicKey != n.PublicKey().String() {
		t.Fatalf("entry not moved to the new endpoint and key: %+v %v", got, err)
	}
}

// The static key lives in the state directory: a restart keeps it (the
// devices keep working), the file is private, and a damaged file is an
// error rather than a silent new key.
func TestHostedNucleusKeepsItsKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	cfg := hosted.Config{SecurityKey: "k", Public: "n.example.com:51820", StateDir: dir}
	first, err := hosted.New(cfg, hosted.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := hosted.New(cfg, hosted.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if first.PublicKey() != again.PublicKey() || first.PublicKey().IsZero() {
		t.Fatalf("the key changed across a restart: %v, %v", first.PublicKey(), again.PublicKey())
	}
	path := filepath.Join(dir, hosted.KeyFile)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want mode %v", p, err, want)
		}
	}
	// Readable by others: restricted, and the key kept.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := hosted.New(cfg, hosted.Deps{}); err != nil || n.PublicKey() != first.PublicKey() {
		t.Fatalf("after chmod 644: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file left at %v", fi.Mode().Perm())
	}
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hosted.New(cfg, hosted.Deps{}); err == nil {
		t.Fatal("a damaged key file was accepted")
	}
}

func TestHostedNucleusRefusesAWrongKey(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	pc, at := listen(t)
	_, done, _ := runNucleus(t, env, "sk_wrong", at.String(), pc)
	select {
	case err := <-done:
		if client.StatusOf(err) != http.StatusUnauthorized {
			t.Fatalf("Run = %v, want a 401 from the login", err)
		}
	case <-time.After(wait):
		t.Fatal("Run kept going with a wrong key")
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]hosted.Config{
		"no key":           {Public: "n.example.com:51820", StateDir: t.TempDir()},
		"no public":        {SecurityKey: "k", StateDir: t.TempDir()},
		"public sans port": {SecurityKey: "k", Public: "n.example.com", StateDir: t.TempDir()},
		"no state dir":     {SecurityKey: "k", Public: "n.example.com:51820"},
	} {
		if _, err := hosted.New(cfg, hosted.Deps{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// getJSON fetches path from the API with c's access token.
func getJSON(t *testing.T, env *edgetest.Env, c *client.Client, method, path string, out any) {
	t.Helper()
	tok, _ := c.Tokens()
	req, err := http.NewRequest(method, env.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// The hosted nucleus publishes its static public key with its user-server
// entry; a join answer for a network it serves names that key, and the
// devices that use it register.
func TestHostedNucleusPublishesItsKey(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	c := env.Client(u)
	ctx := context.Background()
	pc, at := listen(t)
	n, _, _ := runNucleus(t, env, u.Key, at.String(), pc)
	testenv.Eventually(t, "the user-server entry", func() bool { return n.ServerID() != "" })

	var entries []map[string]any
	getJSON(t, env, c, http.MethodGet, "/api/v2/user-servers", &entries)
	if len(entries) != 1 {
		t.Fatalf("entries %v", entries)
	}
	published, _ := entries[0]["public_key"].(string)
	if raw, err := base64.StdEncoding.DecodeString(published); err != nil || len(raw) != 32 {
		t.Fatalf("the entry publishes no nucleus key: %v", entries[0])
	}

	vn, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "home", ServerID: n.ServerID()})
	if err != nil {
		t.Fatal(err)
	}
	var joins []wire.JoinResponse
	for i, hw := range []string{"hw-a", "hw-b"} {
		d, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: hw, HardwareUUID: hw, Platform: "linux", PublicKey: deviceKey(byte(i + 1)).String()})
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]any
		tok, _ := c.Tokens()
		req, _ := http.NewRequest(http.MethodPost, env.URL+"/api/v2/virtual-networks/"+vn.ID+"/devices/"+d.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&raw)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("join: %s %v", resp.Status, err)
		}
		if srv, _ := raw["server"].(map[string]any); srv["public_key"] != published {
			t.Fatalf("the join answer's server %v does not name the published key %s", raw["server"], published)
		}
		j, err := c.Join(ctx, vn.ID, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		joins = append(joins, j)
	}
	a, b := newDevice(t, joins[0], 1, at), newDevice(t, joins[1], 2, at)
	testenv.Eventually(t, "A and B to see each other", func() bool { return a.sees(joins[1].VirtualIP) && b.sees(joins[0].VirtualIP) })
}
