// Package netns is what root tests share to build underlays out of Linux
// network namespaces: the capability check (root, the tools, a TUN device;
// a skip becomes a failure under OMNI_TEST_STRICT=1), short commands with a
// timeout, namespaces removed when the test ends, veth links, sysctls,
// nftables scripts and ping.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
)

// CommandTimeout bounds every command Run and RunErr start.
const CommandTimeout = 30 * time.Second

// Require skips t (fails it in strict mode) unless it runs as root with ip
// and the given tools installed and a TUN device available.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	testenv.Root(t)
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Unavailable(t, "%s not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Unavailable(t, "no /dev/net/tun: %v", err)
	}
}

// Run runs a short command and fails t when it fails, with its output.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := RunErr(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a short command, killed after CommandTimeout, and returns its
// combined output.
func RunErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// Tag returns a random tag that keeps one run's namespace names apart from
// another's.
func Tag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// New creates the network namespace name with lo up, deleted when t ends.
func New(t testing.TB, name string) string {
	t.Helper()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _, _ = RunErr("ip", "netns", "del", name) })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// Veth joins nsA (interface ifA) and nsB (ifB) and sets both up with the
// given space-separated addresses (no duplicate address detection).
func Veth(t testing.TB, nsA, ifA, addrA, nsB, ifB, addrB string) {
	t.Helper()
	Run(t, "ip", "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	for _, x := range [][3]string{{nsA, ifA, addrA}, {nsB, ifB, addrB}} {
		Run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
		for _, a := range strings.Fields(x[2]) {
			Run(t, "ip", "-n", x[0], "addr", "add", a, "dev", x[1], "nodad")
		}
	}
}

// Sysctl sets kv ("key=value") in ns.
func Sysctl(t testing.TB, ns, kv string) {
	t.Helper()
	Run(t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv)
}

// NFT loads an nft script into ns.
func NFT(t testing.TB, ns, script string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", ns, err, out, script)
	}
}

// PingOK pings dst from ns until one reply, at most tries times (about one
// second each).
func PingOK(ns, dst string, tries int) bool {
	for range tries {
		if _, err := RunErr("ip", "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "1", dst); err == nil {
			return true
		}
	}
	return false
}
