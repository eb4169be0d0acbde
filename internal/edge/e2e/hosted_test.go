//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/hosted"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// TestHostedNucleusBinary runs `omni serve edge` and `omni edge nucleus`
// (Nucleus Mode) as processes: the nucleus announces itself, with the
// public key it keeps in its state directory, in the account's user
// servers, a network pointed at it hands its address and key to joining
// devices, and two members register with it and see each other.
func TestHostedNucleusBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	data := t.TempDir()
	edgeAddr := testenv.FreeTCP(t)
	serve := exec.Command(testenv.OmniBinary(t), "serve", "edge", "--data", data, "--edge-listen", edgeAddr, "--nucleus-listen", testenv.FreeUDP(t), "--log-level", "warn")
	var serveLogs bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLogs, &serveLogs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(serve) })
	waitHTTP(t, "http://"+edgeAddr+"/readyz", &serveLogs)

	runAdmin(t, "user", "create", "--data", data, "--email", "lab@example.com", "--password", "correct horse battery")
	var key struct{ Key string }
	if err := json.Unmarshal(runAdmin(t, "key", "create", "--data", data, "--email", "lab@example.com", "--json"), &key); err != nil {
		t.Fatal(err)
	}

	public := testenv.FreeUDP(t)
	state := t.TempDir()
	nuc := exec.Command(testenv.OmniBinary(t), "edge", "nucleus", "--server", "http://"+edgeAddr, "--listen", public, "--name", "home lab", "--country", "nl",
		"--state", state)
	nuc.Env = append(os.Environ(), "OMNI_EDGE_SECURITY_KEY="+key.Key)
	var nucLogs bytes.Buffer
	nuc.Stdout, nuc.Stderr = &nucLogs, &nucLogs
	if err := nuc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopProcess(nuc)
		if t.Failed() {
			t.Logf("omni edge nucleus logs:\n%s\nomni serve logs:\n%s", nucLogs.String(), serveLogs.String())
		}
	})

	ctx := context.Background()
	c := client.New("http://"+edgeAddr, nil)
	if _, err := c.LoginSecurityKey(ctx, key.Key); err != nil {
		t.Fatal(err)
	}
	var srv wire.UserServer
	waitFor(t, 20*time.Second, "the user-server entry", func() bool {
		list, err := c.UserServers(ctx)
		if err == nil && len(list) == 1 {
			srv = list[0]
		}
		return srv.ID != ""
	})
	if srv.Host != public || srv.Name != "home lab" || srv.Country != "NL" {
		t.Fatalf("entry = %+v, want host %s", srv, public)
	}
	kf, err := os.ReadFile(filepath.Join(state, hosted.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(kf)))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := nucleus.NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if srv.PublicKey != nucleus.PublicKeyOf(priv).String() {
		t.Fatalf("entry publishes key %q, the nucleus keeps %v", srv.PublicKey, nucleus.PublicKeyOf(priv))
	}
	vn, err := c.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "lab", ServerID: srv.ID})
	if err != nil {
		t.Fatal(err)
	}
	server := netip.MustParseAddrPort(public)
	var members []*hostedMember
	for i, hw := range []string{"hw-1", "hw-2"} {
		d, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: hw, HardwareUUID: hw, Platform: "linux",
			PublicKey: hostedKey(byte(i + 1)).String()})
		if err != nil {
			t.Fatal(err)
		}
		j, err := c.Join(ctx, vn.ID, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Server.Host != public || j.Server.PublicKey != srv.PublicKey {
			t.Fatalf("join points at %+v, want %s with key %s", j.Server, public, srv.PublicKey)
		}
		members = append(members, newHostedMember(t, j, byte(i+1), server))
	}
	waitFor(t, 20*time.Second, "both members to see each other", func() bool {
		return members[0].sees(members[1].ip) && members[1].sees(members[0].ip)
	})
}

// hostedPriv is the device key of member id, hostedKey its public key.
func hostedPriv(id byte) *ecdh.PrivateKey {
	seed := sha256.Sum256([]byte{'e', id})
	k, err := nucleus.NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
}

func hostedKey(id byte) wgkey.Key { return nucleus.PublicKeyOf(hostedPriv(id)) }

// hostedMember is a device's nucleus client on a loopback socket.
type hostedMember struct {
	ip    netip.Addr
	mu    sync.Mutex
	peers []nucleus.Peer
}

func newHostedMember(t *testing.T, j wire.JoinResponse, id byte, server netip.AddrPort) *hostedMember {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &hostedMember{ip: netip.MustParseAddr(j.VirtualIP)}
	serverKey, err := base64.StdEncoding.DecodeString(j.Server.PublicKey)
	if err != nil || len(serverKey) != 32 {
		t.Fatalf("join answer without the nucleus key: %+v", j.Server)
	}
	c, err := nucleus.NewClient(nucleus.ClientConfig{
		NetworkID: j.NetworkID, Secret: []byte(j.SecretKey), PrivateKey: hostedPriv(id), ServerKey: wgkey.Key(serverKey), Server: server,
		IP4: m.ip, IP6: netip.MustParseAddr(j.VirtualIPv6), Keepalive: 500 * time.Millisecond,
		Send: func(b []byte, to netip.AddrPort) error { _, err := conn.WriteToUDPAddrPort(b, to); return err },
	})
	if err != nil {
		t.Fatal(err)
	}
	c.OnPeers(func(ps []nucleus.Peer) { m.mu.Lock(); m.peers = ps; m.mu.Unlock() })
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
	return m
}

func (m *hostedMember) sees(ip netip.Addr) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.peers {
		if p.IP4 == ip {
			return true
		}
	}
	return false
}

// stopProcess interrupts a process and kills it if it has not exited
// within 10 s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
