//go:build linux

package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// wgHelperEnv, when set, makes this program a plain wireguard-go device
// in the namespace it was started in (see runWGHelper); the value is the
// JSON of a wgConfig.
const wgHelperEnv = "OMNI_DATAPLANEBENCH_WG"

const (
	wgIface = "wgbench0"
	wgMTU   = 1420 // the same as omni's interfaces
	wgPort  = 51900
)

// wgConfig is one end of the hand-made tunnel.
type wgConfig struct {
	PrivateKey string // hex
	PeerPublic string // hex
	Endpoint   string // the peer's underlay ip:port
	Addr       string // this end's tunnel address with prefix
	PeerAddr   string // the peer's tunnel address
}

// runWGHelper runs one wireguard-go device as configured by hand until
// SIGINT or SIGTERM. It prints "ready" once the interface is up.
func runWGHelper(raw string) int {
	var c wgConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Println("err:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	tdev, err := tun.CreateTUN(wgIface, wgMTU)
	if err != nil {
		fmt.Println("err: create tun:", err)
		return 1
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard-go: "))
	defer dev.Close()
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=%s\nallowed_ip=%s/32\npersistent_keepalive_interval=0\n",
		c.PrivateKey, wgPort, c.PeerPublic, c.Endpoint, c.PeerAddr)
	if err := dev.IpcSet(uapi); err != nil {
		fmt.Println("err: ipc set:", err)
		return 1
	}
	if err := dev.Up(); err != nil {
		fmt.Println("err: device up:", err)
		return 1
	}
	for _, args := range [][]string{{"ip", "addr", "add", c.Addr, "dev", wgIface}, {"ip", "link", "set", wgIface, "up"}} {
		if _, err := runCmd(context.Background(), args...); err != nil {
			fmt.Println("err:", err)
			return 1
		}
	}
	fmt.Println("ready")
	<-sig
	return 0
}

// wgKeyPair returns a fresh Curve25519 private and public key in hex, as
// the UAPI takes them.
func wgKeyPair() (priv, pub string, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return hex.EncodeToString(k.Bytes()), hex.EncodeToString(k.PublicKey().Bytes()), nil
}

// startWireGuard runs a plain wireguard-go device in A and in B, each the
// other's only peer, and returns once both interfaces are up.
func startWireGuard(ctx context.Context, tp *topology, self string) ([]*proc, error) {
	privA, pubA, err := wgKeyPair()
	if err != nil {
		return nil, err
	}
	privB, pubB, err := wgKeyPair()
	if err != nil {
		return nil, err
	}
	ends := []struct {
		ns  string
		cfg wgConfig
	}{
		{tp.a, wgConfig{PrivateKey: privA, PeerPublic: pubB, Endpoint: fmt.Sprintf("%s:%d", underB, wgPort), Addr: wgA + "/24", PeerAddr: wgB}},
		{tp.b, wgConfig{PrivateKey: privB, PeerPublic: pubA, Endpoint: fmt.Sprintf("%s:%d", underA, wgPort), Addr: wgB + "/24", PeerAddr: wgA}},
	}
	var ps []*proc
	for _, e := range ends {
		raw, _ := json.Marshal(e.cfg)
		p, err := startProc("wireguard-go in "+e.ns, e.ns, []string{wgHelperEnv + "=" + string(raw)}, self)
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := waitFor(ctx, 15*time.Second, p.name+" ready", func() (bool, error) {
			out := p.logs.String()
			if strings.Contains(out, "err:") || p.exited() {
				return false, fmt.Errorf("%s failed:\n%s", p.name, out)
			}
			return strings.Contains(out, "ready\n"), nil
		}); err != nil {
			return ps, err
		}
	}
	return ps, nil
}
