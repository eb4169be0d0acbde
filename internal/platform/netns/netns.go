// Package netns builds underlays out of Linux network namespaces with the
// ip and nft tools: namespaces with lo up, veth links with addresses,
// sysctls, nftables scripts and ping, each command bounded by a timeout.
// The root tests (through platform/testenv/netns) and the data-plane
// benchmark share it.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CommandTimeout bounds every command this package starts.
const CommandTimeout = 30 * time.Second

// Cmd runs a short command, killed after CommandTimeout or when ctx ends,
// and returns its combined output; the error names the command and
// carries its output.
func Cmd(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Tag returns a random tag that keeps one run's namespace names apart from
// another's.
func Tag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Add creates the network namespace name and sets its lo up. It also
// gives the namespace its own resolv.conf (/etc/netns/<name>/resolv.conf,
// which `ip netns exec` mounts over /etc/resolv.conf), so that a program
// run there that rewrites the resolver configuration (`omni edge up`
// serving its networks' names) changes the namespace's, never the host's.
func Add(ctx context.Context, name string) error {
	if err := os.MkdirAll(filepath.Join("/etc/netns", name), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join("/etc/netns", name, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	if _, err := Cmd(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	_, err := Cmd(ctx, "ip", "-n", name, "link", "set", "lo", "up")
	return err
}

// Del deletes the network namespace name (and with it its veths, and its
// resolv.conf), whatever state the caller's context is in.
func Del(name string) error {
	_, err := Cmd(context.Background(), "ip", "netns", "del", name)
	if name != "" && !strings.ContainsAny(name, "/.") {
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	}
	return err
}

// Veth joins nsA (interface ifA) and nsB (ifB) and sets both up with the
// given space-separated addresses (no duplicate address detection).
func Veth(ctx context.Context, nsA, ifA, addrA, nsB, ifB, addrB string) error {
	if _, err := Cmd(ctx, "ip", "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB); err != nil {
		return err
	}
	for _, x := range [][3]string{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		if _, err := Cmd(ctx, "ip", "-n", x[0], "link", "set", x[1], "up"); err != nil {
			return err
		}
		for _, a := range strings.Fields(x[2]) {
			if _, err := Cmd(ctx, "ip", "-n", x[0], "addr", "add", a, "dev", x[1], "nodad"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Sysctl sets kv ("key=value") in ns.
func Sysctl(ctx context.Context, ns, kv string) error {
	_, err := Cmd(ctx, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv)
	return err
}

// NFT loads an nft script into ns.
func NFT(ctx context.Context, ns, script string) error {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v\n%s\n%s", ns, err, out, script)
	}
	return nil
}

// PingOK pings dst from ns until one reply, at most tries times (about one
// second each).
func PingOK(ctx context.Context, ns, dst string, tries int) bool {
	for range tries {
		if _, err := Cmd(ctx, "ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst); err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return false
}
