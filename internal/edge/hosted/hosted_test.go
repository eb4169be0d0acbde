package hosted_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/hosted"
	"github.com/omniedge/omni/internal/edge/nucleus"
	"github.com/omniedge/omni/internal/edge/wire"
)

const wait = 10 * time.Second

// runNucleus starts a hosted nucleus on a loopback socket and returns it
// with its address once it has announced itself.
func runNucleus(t *testing.T, env *edgetest.Env, key, public string, pc net.PacketConn) (*hosted.Nucleus, <-chan error, context.CancelFunc) {
	t.Helper()
	n, err := hosted.New(hosted.Config{SecurityKey: key, Public: public, Name: "lab", Country: "DE", Poll: 50 * time.Millisecond},
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// device is a member's nucleus client on its own loopback socket.
type device struct {
	c     *nucleus.Client
	mu    sync.Mutex
	peers []nucleus.Peer
}

// deviceKey is the key of test device id.
func deviceKey(id byte) nucleus.Key {
	var key nucleus.Key
	key[0], key[31] = id, 0x77
	return key
}

func newDevice(t *testing.T, j wire.JoinResponse, id byte, server netip.AddrPort) *device {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := deviceKey(id)
	d := &device{}
	c, err := nucleus.NewClient(nucleus.ClientConfig{
		NetworkID: j.NetworkID, Secret: []byte(j.SecretKey), PublicKey: key, Server: server,
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
	eventually(t, "the user-server entry", func() bool { return n.ServerID() != "" })
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
	eventually(t, "A and B to see each other", func() bool { return a.sees(jb.VirtualIP) && b.sees(ja.VirtualIP) })

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
	eventually(t, "A to drop B", func() bool { return !a.sees(jb.VirtualIP) })
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
	eventually(t, "the entry", func() bool { return n.ServerID() != "" })
	if n.ServerID() != old.ID {
		t.Fatalf("took %s, want the existing entry %s", n.ServerID(), old.ID)
	}
	got, err := c.UserServers(ctx)
	if err != nil || len(got) != 1 || got[0].Host != at.String() {
		t.Fatalf("entry not moved to the new endpoint: %+v %v", got, err)
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
		"no key":           {Public: "n.example.com:51820"},
		"no public":        {SecurityKey: "k"},
		"public sans port": {SecurityKey: "k", Public: "n.example.com"},
	} {
		if _, err := hosted.New(cfg, hosted.Deps{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
