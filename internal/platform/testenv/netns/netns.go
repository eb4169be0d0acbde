// Package netns is what root tests share to build underlays out of Linux
// network namespaces: the capability check (root, the tools, a TUN device;
// a skip becomes a failure under OMNI_TEST_STRICT=1), and platform/netns's
// commands bound to a test (a failure fails it, namespaces are removed
// when it ends).
package netns

import (
	"context"
	"os"
	"os/exec"
	"testing"

	pnetns "github.com/omniedge/omni/internal/platform/netns"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// CommandTimeout bounds every command Run and RunErr start.
const CommandTimeout = pnetns.CommandTimeout

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
		t.Fatal(err)
	}
	return out
}

// RunErr runs a short command, killed after CommandTimeout, and returns its
// combined output.
func RunErr(args ...string) (string, error) {
	return pnetns.Cmd(context.Background(), args...)
}

// Tag returns a random tag that keeps one run's namespace names apart from
// another's.
func Tag() string { return pnetns.Tag() }

// New creates the network namespace name with lo up, deleted when t ends.
func New(t testing.TB, name string) string {
	t.Helper()
	t.Cleanup(func() { _ = pnetns.Del(name) })
	if err := pnetns.Add(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// Veth joins nsA (interface ifA) and nsB (ifB) and sets both up with the
// given space-separated addresses (no duplicate address detection).
func Veth(t testing.TB, nsA, ifA, addrA, nsB, ifB, addrB string) {
	t.Helper()
	if err := pnetns.Veth(context.Background(), nsA, ifA, addrA, nsB, ifB, addrB); err != nil {
		t.Fatal(err)
	}
}

// Sysctl sets kv ("key=value") in ns.
func Sysctl(t testing.TB, ns, kv string) {
	t.Helper()
	if err := pnetns.Sysctl(context.Background(), ns, kv); err != nil {
		t.Fatal(err)
	}
}

// NFT loads an nft script into ns.
func NFT(t testing.TB, ns, script string) {
	t.Helper()
	if err := pnetns.NFT(context.Background(), ns, script); err != nil {
		t.Fatal(err)
	}
}

// PingOK pings dst from ns until one reply, at most tries times (about one
// second each).
func PingOK(ns, dst string, tries int) bool {
	return pnetns.PingOK(context.Background(), ns, dst, tries)
}
