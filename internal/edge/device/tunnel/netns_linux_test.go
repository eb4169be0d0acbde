package tunnel

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/testenv/netns"
)

// The root tests run real devices in network namespaces. Each device runs
// in a copy of the test binary started with `ip netns exec` (see TestMain),
// so that its TUN, socket, netlink and nftables calls all happen inside the
// namespace. Only documentation and private ranges are used, and nothing
// is routed out of the namespaces.

const helperEnv = "OMNI_TUNNEL_TEST_HELPER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	Private wgkey.Key
	Secret  string
	Port    uint16
	Addr4   netip.Prefix
	Addr6   netip.Prefix
	Peers   []Peer
}

// runHelper runs one device and obeys line commands on in: "serve on",
// "serve off", "exit <key>", "exit none", "exitaddr <virtual IP>". EOF
// closes the device.
func runHelper(raw string, in io.Reader, out io.Writer) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		fmt.Fprintln(out, "err:", err)
		return 1
	}
	dev, err := New(Config{PrivateKey: hc.Private, NetworkSecret: []byte(hc.Secret), ListenPort: hc.Port, Addr4: hc.Addr4, Addr6: hc.Addr6})
	if err != nil {
		fmt.Fprintln(out, "err:", err)
		return 1
	}
	if err := dev.SetPeers(hc.Peers); err != nil {
		fmt.Fprintln(out, "err:", err)
		return 1
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var err error
		switch cmd, arg, _ := strings.Cut(sc.Text(), " "); {
		case cmd == "serve":
			err = dev.ServeExit(arg == "on")
		case cmd == "routes":
			list, mode, _ := strings.Cut(arg, " ")
			var rs []netip.Prefix
			if list != "none" {
				for _, r := range strings.Split(list, ",") {
					rs = append(rs, netip.MustParsePrefix(r))
				}
			}
			err = dev.ServeRoutes(rs, mode != "nosnat")
		case cmd == "exit" && arg == "none":
			err = dev.UseExit(wgkey.Key{})
		case cmd == "exitaddr":
			err = dev.UseExitAddr(netip.MustParseAddr(arg))
		case cmd == "exit":
			var k wgkey.Key
			if k, err = wgkey.Parse(arg); err == nil {
				err = dev.UseExit(k)
			}
		default:
			err = fmt.Errorf("unknown command %q", sc.Text())
		}
		if err != nil {
			fmt.Fprintln(out, "err:", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
	}
	if err := dev.Close(); err != nil {
		fmt.Fprintln(out, "err:", err)
		return 1
	}
	fmt.Fprintln(out, "closed")
	return 0
}

type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

func startHelper(t *testing.T, ns string, hc helperConfig) *helper {
	t.Helper()
	raw, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	go func() { cmd.Wait(); close(h.done) }()
	t.Cleanup(h.stop)
	h.expect("ready")
	return h
}

func (h *helper) expect(want string) {
	h.t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok || line != want {
			h.t.Fatalf("helper said %q (open %v), want %q", line, ok, want)
		}
	case <-time.After(15 * time.Second):
		h.t.Fatalf("helper silent, want %q", want)
	}
}

func (h *helper) do(cmd string) {
	h.t.Helper()
	if _, err := fmt.Fprintln(h.stdin, cmd); err != nil {
		h.t.Fatal(err)
	}
	h.expect("ok")
}

// stop closes the device (EOF) and waits, killing the helper after a
// timeout.
func (h *helper) stop() {
	h.stdin.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

// crash kills the helper without letting it clean up.
func (h *helper) crash() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	// ip netns exec execs the helper, so the signal reaches it directly.
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Fatal("helper did not die")
	}
}

type rootPair struct {
	nsA, nsB string
	a, b     *helper
	keyA     wgkey.Key
	keyB     wgkey.Key
}

// startPair runs two devices, A (100.100.0.1, fd00::1) and B (…2), joined
// by a veth 198.51.100.1 ↔ 198.51.100.2 as the underlay.
func startPair(t *testing.T, secretB string) *rootPair {
	t.Helper()
	return startPairWith(t, secretB, nil)
}

// startPairWith is startPair with further allowed IPs on B's peer entry
// for A (the subnet routes A carries).
func startPairWith(t *testing.T, secretB string, routesViaA []netip.Prefix) *rootPair {
	t.Helper()
	p := &rootPair{nsA: netns.New(t, "omnit-a-"+netns.Tag()), nsB: netns.New(t, "omnit-b-"+netns.Tag())}
	netns.Veth(t, p.nsA, "ux", "198.51.100.1/24", p.nsB, "uy", "198.51.100.2/24")
	privA, _ := wgkey.GeneratePrivate()
	privB, _ := wgkey.GeneratePrivate()
	p.keyA, p.keyB = privA.PublicKey(), privB.PublicKey()
	peerA := Peer{PublicKey: p.keyA, Endpoint: netip.MustParseAddrPort("198.51.100.1:51820"),
		Addr4: netip.MustParseAddr("100.100.0.1"), Addr6: netip.MustParseAddr("fd00::1"), AllowedIPs: routesViaA}
	peerB := Peer{PublicKey: p.keyB, Endpoint: netip.MustParseAddrPort("198.51.100.2:51820"),
		Addr4: netip.MustParseAddr("100.100.0.2"), Addr6: netip.MustParseAddr("fd00::2")}
	p.a = startHelper(t, p.nsA, helperConfig{Private: privA, Secret: "s3cret", Port: 51820,
		Addr4: netip.MustParsePrefix("100.100.0.1/24"), Addr6: netip.MustParsePrefix("fd00::1/64"), Peers: []Peer{peerB}})
	p.b = startHelper(t, p.nsB, helperConfig{Private: privB, Secret: secretB, Port: 51820,
		Addr4: netip.MustParsePrefix("100.100.0.2/24"), Addr6: netip.MustParsePrefix("fd00::2/64"), Peers: []Peer{peerA}})
	return p
}

func TestNetnsPing(t *testing.T) {
	netns.Require(t, "nft", "ping")
	p := startPair(t, "s3cret")
	addrs := netns.Run(t, "ip", "-n", p.nsA, "addr", "show", "dev", "omni0")
	for _, want := range []string{"100.100.0.1/24", "fd00::1/64", "mtu 1420"} {
		if !strings.Contains(addrs, want) {
			t.Fatalf("omni0 in A lacks %q:\n%s", want, addrs)
		}
	}
	if !netns.PingOK(p.nsA, "100.100.0.2", 10) {
		t.Fatal("A cannot ping B over IPv4")
	}
	if !netns.PingOK(p.nsA, "fd00::2", 5) {
		t.Fatal("A cannot ping B over IPv6")
	}
	if !netns.PingOK(p.nsB, "100.100.0.1", 5) {
		t.Fatal("B cannot ping A over IPv4")
	}
	p.b.stop()
	if out, err := netns.RunErr("ip", "-n", p.nsB, "link", "show", "omni0"); err == nil {
		t.Fatalf("omni0 left in B after Close:\n%s", out)
	}
}

func TestNetnsWrongSecret(t *testing.T) {
	netns.Require(t, "nft", "ping")
	p := startPair(t, "another network's secret")
	if netns.PingOK(p.nsA, "100.100.0.2", 3) {
		t.Fatal("ping crossed devices with different network secrets")
	}
}

// TestNetnsExitNode: A serves as exit into an "internet" namespace that has
// no route back to the tunnel ranges; B uses A as exit. Replies only come
// back if A masquerades.
func TestNetnsExitNode(t *testing.T) {
	netns.Require(t, "nft", "ping")
	p := startPair(t, "s3cret")
	inet := netns.New(t, "omnit-inet-"+netns.Tag())
	netns.Veth(t, p.nsA, "ix", "203.0.113.1/24 2001:db8:1::1/64", inet, "iy", "203.0.113.10/24 2001:db8:1::10/64")

	p.a.do("serve on")
	table := netns.Run(t, "ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0")
	for _, want := range []string{"100.100.0.0/24", "fd00::/64", "masquerade", `iifname "omni0" accept`} {
		if !strings.Contains(table, want) {
			t.Fatalf("nft table lacks %q:\n%s", want, table)
		}
	}
	if fw := netns.Run(t, "ip", "netns", "exec", p.nsA, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(fw) != "1" {
		t.Fatalf("ip_forward = %q", fw)
	}
	if netns.PingOK(p.nsB, "203.0.113.10", 1) {
		t.Fatal("internet reachable from B before selecting an exit")
	}

	p.b.do("exitaddr 100.100.0.1")
	for _, fam := range []string{"-4", "-6"} {
		rules := netns.Run(t, "ip", fam, "-n", p.nsB, "rule")
		for _, want := range []string{"5210:\tfrom all lookup main suppress_prefixlength 0", "5211:\tnot from all fwmark 0xca6c lookup 51820"} {
			if !strings.Contains(rules, want) {
				t.Fatalf("%s rules lack %q:\n%s", fam, want, rules)
			}
		}
		if routes := netns.Run(t, "ip", fam, "-n", p.nsB, "route", "show", "table", "51820"); !strings.Contains(routes, "default dev omni0") {
			t.Fatalf("%s table 51820: %q", fam, routes)
		}
	}
	if !netns.PingOK(p.nsB, "203.0.113.10", 10) {
		t.Fatal("B cannot reach the internet namespace through exit A (IPv4)")
	}
	if !netns.PingOK(p.nsB, "2001:db8:1::10", 5) {
		t.Fatal("B cannot reach the internet namespace through exit A (IPv6)")
	}
	// The underlay stays off the tunnel: the peer is still reachable on it.
	if !netns.PingOK(p.nsB, "198.51.100.1", 3) || !netns.PingOK(p.nsB, "100.100.0.1", 3) {
		t.Fatal("underlay or tunnel broken while using the exit")
	}

	p.b.do("exitaddr 0.0.0.0")
	assertNoExitRouting(t, p.nsB)
	if netns.PingOK(p.nsB, "203.0.113.10", 1) {
		t.Fatal("internet still reachable after clearing the exit")
	}
	if !netns.PingOK(p.nsB, "100.100.0.1", 3) {
		t.Fatal("tunnel broken after clearing the exit")
	}

	p.a.do("serve off")
	if out, err := netns.RunErr("ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0"); err == nil {
		t.Fatalf("nft table left after serve off:\n%s", out)
	}
}

// TestNetnsSubnetRouter: A routes for a LAN (10.77.0.0/24, fd77::/64)
// whose host has no route back to the tunnel. B's peer entry for A carries
// the LAN as allowed IPs from the start — what a member could configure on
// its own device — and A's host forwards (ip_forward=1): still nothing
// passes until A serves the routes; with source NAT the replies come back;
// without it only once the LAN has a route back.
func TestNetnsSubnetRouter(t *testing.T) {
	netns.Require(t, "nft", "ping")
	p := startPairWith(t, "s3cret", []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24"), netip.MustParsePrefix("fd77::/64")})
	lan := netns.New(t, "omnit-lan-"+netns.Tag())
	netns.Veth(t, p.nsA, "lx", "10.77.0.1/24 fd77::1/64", lan, "ly", "10.77.0.2/24 fd77::2/64")
	netns.Sysctl(t, p.nsA, "net.ipv4.ip_forward=1")
	netns.Sysctl(t, p.nsA, "net.ipv6.conf.all.forwarding=1")
	for _, fam := range []string{"-4", "-6"} {
		if routes := netns.Run(t, "ip", fam, "-n", p.nsB, "route"); !strings.Contains(routes, "dev omni0") ||
			!(strings.Contains(routes, "10.77.0.0/24 dev omni0") || strings.Contains(routes, "fd77::/64 dev omni0")) {
			t.Fatalf("B's %s routes lack the subnet route through omni0:\n%s", fam, routes)
		}
	}
	if !netns.PingOK(p.nsB, "100.100.0.1", 10) {
		t.Fatal("B cannot ping A")
	}
	if netns.PingOK(p.nsB, "10.77.0.2", 2) || netns.PingOK(p.nsB, "fd77::2", 1) {
		t.Fatal("A forwarded into its LAN before serving the route")
	}
	p.a.do("routes 10.77.0.0/24,fd77::/64")
	if !netns.PingOK(p.nsB, "10.77.0.2", 5) || !netns.PingOK(p.nsB, "fd77::2", 5) {
		t.Fatal("B cannot reach the LAN host through router A")
	}
	// Only the routes served: another destination behind A stays closed.
	netns.Run(t, "ip", "-n", lan, "addr", "add", "10.78.0.2/24", "dev", "ly")
	netns.Run(t, "ip", "-n", p.nsA, "route", "add", "10.78.0.0/24", "via", "10.77.0.2")
	netns.Run(t, "ip", "-n", p.nsB, "route", "add", "10.78.0.0/24", "dev", "omni0")
	if netns.PingOK(p.nsB, "10.78.0.2", 1) {
		t.Fatal("A forwarded to a prefix it does not serve")
	}

	p.a.do("routes 10.77.0.0/24 nosnat")
	if netns.PingOK(p.nsB, "10.77.0.2", 1) {
		t.Fatal("a reply came back without source NAT and without a route back")
	}
	netns.Run(t, "ip", "-n", lan, "route", "add", "100.100.0.0/24", "via", "10.77.0.1")
	if !netns.PingOK(p.nsB, "10.77.0.2", 5) {
		t.Fatal("without source NAT, with a route back, B cannot reach the LAN host")
	}
	p.a.do("routes none")
	if netns.PingOK(p.nsB, "10.77.0.2", 1) {
		t.Fatal("A still forwards after it stopped serving the routes")
	}
	p.a.stop()
	if out, err := netns.RunErr("ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0_fwd"); err == nil {
		t.Fatalf("forward table left after Close:\n%s", out)
	}
}

func assertNoExitRouting(t *testing.T, ns string) {
	t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		rules := netns.Run(t, "ip", fam, "-n", ns, "rule")
		if strings.Contains(rules, "51820") || strings.Contains(rules, "suppress_prefixlength") {
			t.Fatalf("%s rules left:\n%s", fam, rules)
		}
		if routes := netns.Run(t, "ip", fam, "-n", ns, "route", "show", "table", "51820"); strings.TrimSpace(routes) != "" {
			t.Fatalf("%s routes left in table 51820: %q", fam, routes)
		}
	}
}

// TestNetnsCrashCleanup: rules left by a killed device are removed by the
// next one, and Close removes its own.
func TestNetnsCrashCleanup(t *testing.T) {
	netns.Require(t, "nft", "ping")
	p := startPair(t, "s3cret")
	p.a.do("serve on")
	p.b.do("exit " + p.keyA.String())
	p.a.crash()
	p.b.crash()
	if _, err := netns.RunErr("ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0"); err != nil {
		t.Fatal("expected the crashed exit's table to remain until the next start")
	}
	if rules := netns.Run(t, "ip", "-n", p.nsB, "rule"); !strings.Contains(rules, "51820") {
		t.Fatalf("expected the crashed client's rules to remain:\n%s", rules)
	}
	privA, _ := wgkey.GeneratePrivate()
	privB, _ := wgkey.GeneratePrivate()
	a := startHelper(t, p.nsA, helperConfig{Private: privA, Secret: "s3cret", Port: 51820, Addr4: netip.MustParsePrefix("100.100.0.1/24")})
	b := startHelper(t, p.nsB, helperConfig{Private: privB, Secret: "s3cret", Port: 51820, Addr4: netip.MustParsePrefix("100.100.0.2/24")})
	if out, err := netns.RunErr("ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0"); err == nil {
		t.Fatalf("leftover table not cleaned at start:\n%s", out)
	}
	assertNoExitRouting(t, p.nsB)

	a.do("serve on")
	a.stop()
	if out, err := netns.RunErr("ip", "netns", "exec", p.nsA, "nft", "list", "table", "inet", "omniedge_omni0"); err == nil {
		t.Fatalf("table left after Close:\n%s", out)
	}
	b.stop()
}
