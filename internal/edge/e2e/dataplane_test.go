//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/tunnel"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/platform/testenv/netns"
)

const tunnelHelperEnv = "OMNI_E2E_TUNNEL_HELPER"

// TestMain lets the test binary double as a bare tunnel device (see
// startIntruder): with tunnelHelperEnv set it runs one device in the
// namespace it was started in until stdin closes.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(tunnelHelperEnv); cfg != "" {
		os.Exit(runTunnelHelper(cfg))
	}
	os.Exit(m.Run())
}

type tunnelHelperConfig struct {
	Private wgkey.Key
	Secret  []byte
	Addr4   netip.Prefix
	Peers   []tunnel.Peer
}

func runTunnelHelper(raw string) int {
	var hc tunnelHelperConfig
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		fmt.Println("err:", err)
		return 1
	}
	dev, err := tunnel.New(tunnel.Config{PrivateKey: hc.Private, NetworkSecret: hc.Secret, Addr4: hc.Addr4})
	if err == nil {
		err = dev.SetPeers(hc.Peers)
	}
	if err != nil {
		fmt.Println("err:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = dev.Close()
	return 0
}

// startIntruder runs a bare tunnel device in ns until the returned stop is
// called (or t ends).
func startIntruder(t *testing.T, ns string, hc tunnelHelperConfig) (stop func()) {
	t.Helper()
	raw, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), tunnelHelperEnv+"="+string(raw))
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
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stdin.Close()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(stop)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l != "ready" {
			t.Fatalf("tunnel helper: %q", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tunnel helper silent")
	}
	return stop
}

// startProc runs the omni binary in ns; it is stopped with SIGTERM (then
// killed) when t ends, and its output logged if t failed.
func startProc(t *testing.T, name, ns string, args ...string) (*exec.Cmd, *testenv.Output, <-chan struct{}) {
	t.Helper()
	// ip netns exec execs the binary, so the interrupt reaches it.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, testenv.OmniBinary(t)}, args...)...)
	logs, done := testenv.Start(t, name, cmd)
	return cmd, logs, done
}

// waitFor polls cond until it holds or d has passed, dumping every edge's
// status before failing.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, ok := testenv.Poll(d, cond); ok {
		return
	}
	for _, e := range statusDump {
		if st, err := e.statusErr(); err == nil {
			raw, _ := json.MarshalIndent(st, "", "  ")
			t.Logf("edge %s status:\n%s", e.name, raw)
		}
	}
	t.Fatalf("%s: not within %s", what, d)
}

type controlPlane struct {
	data, url string
	metrics   string // the metrics listener's URL
	logs      *testenv.Output
	wan       string
}

// startControlPlane runs `omni serve edge` inside wan with the API and the
// nucleus on the wan address.
func startControlPlane(t *testing.T, tp *topology) *controlPlane {
	t.Helper()
	return startControlPlaneAt(t, tp.wan, nucleusIP)
}

// startControlPlaneAt runs `omni serve edge` inside ns with the API (port
// 8080) and the nucleus (51820) on the address ip.
func startControlPlaneAt(t *testing.T, ns, ip string) *controlPlane {
	t.Helper()
	cp := &controlPlane{data: t.TempDir(), url: "http://" + net.JoinHostPort(ip, "8080"), metrics: "http://" + net.JoinHostPort(ip, "9090") + "/metrics", wan: ns}
	_, logs, done := startProc(t, "omni serve", ns, "serve", "edge", "--data", cp.data,
		"--edge-listen", net.JoinHostPort(ip, "8080"), "--nucleus-listen", net.JoinHostPort(ip, "51820"), "--metrics-listen", net.JoinHostPort(ip, "9090"),
		"--rate-limit-token", "0", "--rate-limit-ip", "0", "--presence-flush", "1s", "--log-level", "debug")
	cp.logs = logs
	hc := httpClientIn(ns, 2*time.Second)
	waitFor(t, 20*time.Second, "omni serve ready", func() bool {
		select {
		case <-done:
			t.Fatalf("omni serve exited:\n%s", logs)
		default:
		}
		resp, err := hc.Get(cp.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cp
}

// client logs in with key through the wan namespace.
func (cp *controlPlane) client(t *testing.T, key string) *client.Client {
	t.Helper()
	c := client.New(cp.url, httpClientIn(cp.wan, 10*time.Second))
	if _, err := c.LoginSecurityKey(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return c
}

// relayed sums omni_nucleus_relayed_packets_total over all networks.
func (cp *controlPlane) relayed(t *testing.T) float64 {
	t.Helper()
	body, err := fetch(cp.wan, cp.metrics, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "omni_nucleus_relayed_packets_total") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// seedUser creates a pro user and a security key with the admin CLI.
func (cp *controlPlane) seedUser(t *testing.T, email string) (key string) {
	t.Helper()
	runAdmin(t, "user", "create", "--data", cp.data, "--email", email, "--password", "correct horse battery", "--plan", "pro", "--json")
	var k struct{ Key string }
	if err := json.Unmarshal(runAdmin(t, "key", "create", "--data", cp.data, "--email", email, "--json"), &k); err != nil || k.Key == "" {
		t.Fatalf("key create: %v %+v", err, k)
	}
	return k.Key
}

func (cp *controlPlane) seedNetwork(t *testing.T, email, name string) string {
	t.Helper()
	var n struct{ ID string }
	if err := json.Unmarshal(runAdmin(t, "network", "create", "--data", cp.data, "--email", email, "--name", name, "--json"), &n); err != nil || n.ID == "" {
		t.Fatalf("network create: %v %+v", err, n)
	}
	return n.ID
}

type edge struct {
	name, ns, state string
	logs            *testenv.Output
	done            <-chan struct{}
	cmd             *exec.Cmd
}

// startEdge runs `omni edge up` in ns and waits until its tunnel is up and
// registered with the nucleus.
func startEdge(t *testing.T, cp *controlPlane, name, ns, key, network string, extra ...string) *edge {
	t.Helper()
	return startEdgeState(t, cp, name, ns, t.TempDir(), key, network, extra...)
}

// startEdgeState is startEdge with the state directory given (an edge
// started again keeps its identity).
func startEdgeState(t *testing.T, cp *controlPlane, name, ns, state, key, network string, extra ...string) *edge {
	t.Helper()
	e := &edge{name: name, ns: ns, state: state}
	args := append([]string{"edge", "up", "--server", cp.url, "--security-key", key, "--name", name,
		"--network", network, "--state", e.state, "--log-level", "debug"}, extra...)
	statusDump = append(statusDump, e)
	e.cmd, e.logs, e.done = startProc(t, "edge "+name, ns, args...)
	waitFor(t, 30*time.Second, "edge "+name+" up", func() bool {
		select {
		case <-e.done:
			if strings.Contains(e.logs.String(), "no tunnel implementation") {
				t.Fatalf("`omni edge up` has no data plane wired in yet (internal/cli/edge_dataplane.go):\n%s", e.logs)
			}
			t.Fatalf("edge %s exited:\n%s", name, e.logs)
		default:
		}
		st, err := e.statusErr()
		return err == nil && len(st.Networks) == 1 && st.Networks[0].Registered && st.Networks[0].Interface != ""
	})
	return e
}

func (e *edge) statusErr() (daemon.Status, error) {
	var st daemon.Status
	out, err := netns.RunErr(omniBinaryPath, "edge", "status", "--json", "--state", e.state)
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	err = json.Unmarshal([]byte(out), &st)
	return st, err
}

func (e *edge) status(t *testing.T) daemon.Status {
	t.Helper()
	st, err := e.statusErr()
	if err != nil {
		t.Fatalf("edge %s status: %v", e.name, err)
	}
	return st
}

func (e *edge) net(t *testing.T) daemon.NetworkStatus {
	t.Helper()
	st := e.status(t)
	if len(st.Networks) != 1 {
		t.Fatalf("edge %s: %d networks", e.name, len(st.Networks))
	}
	return st.Networks[0]
}

// vip4 and vip6 return the edge's virtual addresses without prefix.
func (e *edge) vip4(t *testing.T) string { return strings.Split(e.net(t).VirtualIP, "/")[0] }
func (e *edge) vip6(t *testing.T) string { return strings.Split(e.net(t).VirtualIPv6, "/")[0] }

// peer returns the report on the peer with public key pub, if present.
func (e *edge) peer(t *testing.T, pub string) (daemon.PeerReport, bool) {
	t.Helper()
	for _, p := range e.net(t).Peers {
		if p.PublicKey == pub {
			return p, true
		}
	}
	return daemon.PeerReport{}, false
}

// ping runs `omni edge ping target` against e's daemon (which sends the
// echo requests from its namespace).
func (e *edge) ping(target string, count int) (string, error) {
	return netns.RunErr(omniBinaryPath, "edge", "ping", target, "--count", strconv.Itoa(count), "--interval", "200ms",
		"--timeout", "2s", "--state", e.state)
}

// waitPing waits until `omni edge ping target` on e gets its replies over
// a path whose description contains via.
func (e *edge) waitPing(t *testing.T, d time.Duration, target, via string) string {
	t.Helper()
	var out string
	waitFor(t, d, fmt.Sprintf("edge %s pings %s via %q", e.name, target, via), func() bool {
		var err error
		out, err = e.ping(target, 2)
		return err == nil && strings.Count(out, "pong from "+target+" (") == 2 && strings.Count(out, via) == 2
	})
	t.Logf("omni edge ping %s:\n%s", target, out)
	return out
}

func (e *edge) pathTo(t *testing.T, pub string) daemon.Path {
	p, ok := e.peer(t, pub)
	if !ok {
		return ""
	}
	return p.Path
}

// statusDump lists the running edges whose status a failed wait logs.
var statusDump []*edge

// omniBinaryPath is set once the binary is built (status is polled often).
var omniBinaryPath string

// TestDataPlane drives the real omni binary in every namespace of the
// topology: a direct path through two NATs, the relay when UDP between the
// NATs is blocked, an exit node, leaving, and a device of another network.
func TestDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary in network namespaces")
	}
	netns.Require(t, "nft", "ping", "ss")
	omniBinaryPath = testenv.OmniBinary(t)
	tp := newTopology(t)
	// Runs after the edges stopped (cleanups run last-registered first):
	// `omni edge up` gave A's resolv.conf back as it found it.
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join("/etc/netns", tp.edgeA, "resolv.conf")); err == nil && string(b) != "nameserver 127.0.0.1\n" {
			t.Errorf("A's resolv.conf after the edge stopped:\n%s", b)
		}
	})
	cp := startControlPlane(t, tp)
	const owner = "owner@example.com"
	key := cp.seedUser(t, owner)
	vn := cp.seedNetwork(t, owner, "home")
	admin := cp.client(t, key)
	ctx := context.Background()

	var a, b, e *edge
	var pubA, pubB string
	top := t // the edges outlive the step that starts them

	t.Run("direct", func(t *testing.T) {
		a = startEdge(top, cp, "a", tp.edgeA, key, vn)
		b = startEdge(top, cp, "b", tp.edgeB, key, vn)
		pubA, pubB = a.status(t).PublicKey, b.status(t).PublicKey
		na := a.net(t)
		addrs := netns.Run(t, "ip", "-n", tp.edgeA, "addr", "show", "dev", na.Interface)
		for _, want := range []string{na.VirtualIP, na.VirtualIPv6, "mtu 1420"} {
			if want == "" || !strings.Contains(addrs, want) {
				t.Fatalf("%s in edgeA lacks %q:\n%s", na.Interface, want, addrs)
			}
		}
		if !netns.PingOK(tp.edgeA, b.vip4(t), 20) {
			t.Fatal("A cannot ping B over IPv4")
		}
		if !netns.PingOK(tp.edgeA, b.vip6(t), 10) {
			t.Fatal("A cannot ping B over IPv6")
		}
		waitFor(t, 20*time.Second, "path A→B direct", func() bool { return a.pathTo(t, pubB) == daemon.PathDirect })
		// (on failure the status is logged below)
		if n := cp.relayed(t); n != 0 {
			t.Fatalf("nucleus relayed %v packets on a direct path", n)
		}
		// `omni edge ping b`: B by its short name, over the direct path;
		// `omni edge status` names B in its table.
		a.waitPing(t, 15*time.Second, "b", "(direct)")
		table := netns.Run(t, omniBinaryPath, "edge", "status", "--state", a.state)
		named := false
		for _, line := range strings.Split(table, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[0] == "b" && f[1] == b.vip4(t) && f[3] == string(daemon.PathDirect) {
				named = true
			}
		}
		if !named {
			t.Fatalf("A's status table has no direct row for peer b at %s:\n%s", b.vip4(t), table)
		}
		if out, err := a.ping("nobody", 1); err == nil || !strings.Contains(out+err.Error(), "unknown peer") {
			t.Fatalf("ping of an unknown name: %v %s", err, out)
		}
		// `omni edge netcheck`: A reaches the nucleus over UDP from behind
		// its NAT.
		var nc daemon.NetcheckReport
		if err := json.Unmarshal([]byte(netns.Run(t, omniBinaryPath, "edge", "netcheck", "--json", "--state", a.state)), &nc); err != nil ||
			len(nc.Networks) != 1 {
			t.Fatalf("netcheck --json: %v %+v", err, nc)
		}
		if n := nc.Networks[0]; !n.UDP || len(n.RTTMS) == 0 || (n.NAT != daemon.NATPortPreserving && n.NAT != daemon.NATPortRewriting) ||
			!strings.HasPrefix(n.Observed, natAWan+":") {
			t.Fatalf("netcheck of A behind its NAT %s: %+v", natAWan, n)
		}
		t.Logf("omni edge netcheck:\n%s", netns.Run(t, omniBinaryPath, "edge", "netcheck", "--state", a.state))
	})

	t.Run("names", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		var zone string
		waitFor(t, 10*time.Second, "A serves the network's names", func() bool {
			n := a.net(t)
			zone = n.DNSZone
			return zone != "" && n.DNSNames >= 2
		})
		conf, err := os.ReadFile(filepath.Join("/etc/netns", tp.edgeA, "resolv.conf"))
		if err != nil || !strings.Contains(string(conf), "nameserver "+a.vip4(t)) {
			t.Fatalf("A's resolv.conf does not point at its own name server %s: %v\n%s", a.vip4(t), err, conf)
		}
		resolve := func(family, name string) (string, error) {
			return netns.RunErr("ip", "netns", "exec", tp.edgeA, "getent", family, name)
		}
		nameB := "b." + zone
		if out, err := resolve("ahostsv4", nameB); err != nil || !strings.Contains(out, b.vip4(t)) {
			t.Fatalf("A resolves %s (A): %v %s; want %s", nameB, err, out, b.vip4(t))
		}
		if out, err := resolve("ahostsv6", nameB); err != nil || !strings.Contains(out, b.vip6(t)) {
			t.Fatalf("A resolves %s (AAAA): %v %s; want %s", nameB, err, out, b.vip6(t))
		}
		if !netns.PingOK(tp.edgeA, nameB, 10) {
			t.Fatalf("A cannot ping B by name %s", nameB)
		}
		// Names outside the zones still resolve through the original
		// resolver (here: none answers, so only the zone's names work).
		if out, err := resolve("ahostsv4", "nobody."+zone); err == nil {
			t.Fatalf("a name nobody holds resolved: %s", out)
		}

		devB := b.status(t).DeviceID
		if _, err := admin.RenameDevice(ctx, devB, "Bee"); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = admin.RenameDevice(ctx, devB, "b") }()
		start := time.Now()
		waitFor(t, 5*time.Second, "A resolves B's new name", func() bool {
			out, err := resolve("ahostsv4", "bee."+zone)
			return err == nil && strings.Contains(out, b.vip4(t))
		})
		t.Logf("the rename reached A's resolver in %v", time.Since(start).Round(time.Millisecond))
		if out, err := resolve("ahostsv4", nameB); err == nil {
			t.Fatalf("B's old name still resolves after the rename: %s", out)
		}
	})

	t.Run("subnet", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		// R routes for a LAN behind it: lanhost 10.77.0.2 and fd77::2,
		// which has no route to the network (masquerading hides it).
		r := tp.lanHost(t, tp.natB, "edgeR")
		host := netns.New(t, "omnie2e-"+tp.tag+"-lan77")
		netns.Veth(t, r, "lan77", "10.77.0.1/24 fd77::1/64", host, "eth0", "10.77.0.2/24 fd77::2/64")
		const lan4, lan6 = "10.77.0.2", "fd77::2"
		er := startEdge(top, cp, "r", r, key, vn, "--advertise-routes", "10.77.0.0/24,fd77::/64")
		devR := er.status(t).DeviceID
		routes, err := admin.MemberRoutes(ctx, vn, devR)
		if err != nil || len(routes.Advertised) != 2 || len(routes.Enabled) != 0 {
			t.Fatalf("R's routes before approval: %+v %v", routes, err)
		}
		if netns.PingOK(tp.edgeA, lan4, 2) || netns.PingOK(tp.edgeA, lan6, 1) {
			t.Fatal("A reaches the LAN behind R before the routes were approved")
		}
		// A route of A's own into the tunnel does not help: A's WireGuard
		// has no peer for the LAN (a member that configures one on its
		// own device meets R's forward rules: tunnel TestNetnsSubnetRouter).
		na := a.net(t)
		netns.Run(t, "ip", "-n", tp.edgeA, "route", "add", "10.77.0.0/24", "dev", na.Interface)
		if netns.PingOK(tp.edgeA, lan4, 2) {
			t.Fatal("A reached R's LAN through a route of its own, without approval")
		}
		netns.Run(t, "ip", "-n", tp.edgeA, "route", "del", "10.77.0.0/24", "dev", na.Interface)

		if _, err := admin.ApproveRoutes(ctx, vn, devR, []string{"10.77.0.0/24", "fd77::/64"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 20*time.Second, "A pings the LAN host behind R over IPv4", func() bool { return netns.PingOK(tp.edgeA, lan4, 1) })
		t.Logf("the approval reached A and R in %v", time.Since(start).Round(time.Millisecond))
		if !netns.PingOK(tp.edgeA, lan6, 10) {
			t.Fatal("A cannot ping the LAN host behind R over IPv6")
		}
		// The LAN host saw R's LAN address (source NAT), not A's.
		if _, err := admin.ApproveRoutes(ctx, vn, devR, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the LAN unreachable again once the approval is withdrawn", func() bool {
			return !netns.PingOK(tp.edgeA, lan4, 1)
		})
	})

	t.Run("policy", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		vipB := b.vip4(t)
		ports := map[int]bool{22: true, 80: true}
		for port := range ports {
			var ln net.Listener
			if err := inNetns(tp.edgeB, func() (err error) {
				ln, err = net.Listen("tcp", net.JoinHostPort(vipB, strconv.Itoa(port)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("hello\n"))
					c.Close()
				}
			}()
		}
		connects := func(port int) bool {
			var ok bool
			_ = inNetns(tp.edgeA, func() error {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(vipB, strconv.Itoa(port)), 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 6)
				_, err = io.ReadFull(c, buf)
				ok = err == nil && string(buf) == "hello\n"
				return nil
			})
			return ok
		}
		if !connects(22) || !connects(80) {
			t.Fatal("A cannot reach B's TCP 22 and 80 before any policy")
		}
		setPolicy := func(doc string) time.Time {
			t.Helper()
			if _, err := admin.SetPolicy(ctx, vn, []byte(doc)); err != nil {
				t.Fatal(err)
			}
			return time.Now()
		}
		defer func() { _, _ = admin.SetPolicy(ctx, vn, []byte("null")) }()

		at := setPolicy(`{"rules": [{"action": "accept", "src": ["a"], "dst": ["b:22"], "proto": "tcp"}]}`)
		waitFor(t, 5*time.Second, "B drops TCP 80 from A under the policy", func() bool { return !connects(80) })
		t.Logf("the policy took effect in %v", time.Since(at).Round(time.Millisecond))
		// TCP 22 passes, and its replies pass A (whose own policy lets
		// nothing in but replies to the flows it starts).
		if !connects(22) {
			t.Fatal("TCP 22 from A to B refused under a policy that allows it")
		}
		if netns.PingOK(tp.edgeA, vipB, 2) {
			t.Fatal("ICMP from A reached B under a TCP-22-only policy")
		}
		if connects(80) {
			t.Fatal("TCP 80 from A reached B under a TCP-22-only policy")
		}

		at = setPolicy(`{"rules": [{"action": "accept", "src": ["a"], "dst": ["b:22,80"], "proto": "tcp"}]}`)
		waitFor(t, 5*time.Second, "TCP 80 allowed after the policy changed", func() bool { return connects(80) })
		t.Logf("the change took effect in %v", time.Since(at).Round(time.Millisecond))

		// Tags: TCP 80 is allowed to whoever carries tag:web; B loses
		// its access when it loses the tag, without a policy change.
		devB := b.status(t).DeviceID
		if _, err := admin.SetDeviceTags(ctx, devB, "tag:web"); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = admin.SetDeviceTags(ctx, devB) }()
		setPolicy(`{"rules": [{"action": "accept", "src": ["a"], "dst": ["b:22", "tag:web:80"], "proto": "tcp"}]}`)
		if !connects(80) || !connects(22) {
			t.Fatal("TCP 80 to B (tag:web) or TCP 22 refused under a policy that allows both")
		}
		if _, err := admin.SetDeviceTags(ctx, devB); err != nil {
			t.Fatal(err)
		}
		at = time.Now()
		waitFor(t, 5*time.Second, "B drops TCP 80 once it no longer carries tag:web", func() bool { return !connects(80) })
		t.Logf("the tag change took effect in %v", time.Since(at).Round(time.Millisecond))
		if !connects(22) {
			t.Fatal("TCP 22 refused after B lost a tag that rule does not name")
		}

		setPolicy("null")
		waitFor(t, 5*time.Second, "everything allowed again without a policy", func() bool { return netns.PingOK(tp.edgeA, vipB, 1) })
	})

	t.Run("relay", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		before := cp.relayed(t)
		netns.NFT(t, tp.wan, fmt.Sprintf(`table inet omnie2e_block {
	chain blockfwd {
		type filter hook forward priority filter; policy accept;
		ip saddr %[1]s ip daddr %[2]s meta l4proto udp drop
		ip saddr %[2]s ip daddr %[1]s meta l4proto udp drop
	}
}
`, natAWan, natBWan))
		blocked := true
		defer func() {
			if blocked {
				_, _ = netns.RunErr("ip", "netns", "exec", tp.wan, "nft", "delete", "table", "inet", "omnie2e_block")
			}
		}()
		if !netns.PingOK(tp.edgeA, b.vip4(t), 60) {
			t.Fatal("A cannot ping B over IPv4 with UDP between the NATs blocked")
		}
		if !netns.PingOK(tp.edgeA, b.vip6(t), 10) {
			t.Fatal("A cannot ping B over IPv6 with UDP between the NATs blocked")
		}
		if after := cp.relayed(t); after <= before {
			t.Fatalf("relay counters did not rise (%v → %v) while direct UDP was blocked", before, after)
		}
		waitFor(t, 30*time.Second, "path A→B relayed", func() bool { return a.pathTo(t, pubB) == daemon.PathRelayed })
		a.waitPing(t, 15*time.Second, "b", "via relay ")
		if !strings.Contains(a.logs.String(), "peer relayed") {
			t.Errorf("A did not log why B is relayed:\n%s", a.logs)
		}

		netns.Run(t, "ip", "netns", "exec", tp.wan, "nft", "delete", "table", "inet", "omnie2e_block")
		blocked = false
		waitFor(t, 120*time.Second, "path A→B direct again", func() bool {
			_ = netns.PingOK(tp.edgeA, b.vip4(t), 1) // traffic drives the path probes
			return a.pathTo(t, pubB) == daemon.PathDirect
		})
		if !netns.PingOK(tp.edgeA, b.vip4(t), 15) {
			t.Fatal("A cannot ping B after the block is lifted")
		}
	})

	t.Run("exit", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		echoServer(t, tp.inet, "[::]:80")
		urls := map[string]string{"http://" + inetIP4 + "/": exitUp4, "http://[" + inetIP6 + "]/": exitUp6}
		for u := range urls {
			if _, err := fetch(tp.edgeA, u, 2*time.Second); err == nil {
				t.Fatalf("%s reachable from A before selecting an exit", u)
			}
		}
		e = startEdge(top, cp, "exit", tp.exit, key, vn, "--exit-node")
		devA, devE := a.status(t).DeviceID, e.status(t).DeviceID
		yes := true
		if _, err := admin.UpdateMember(ctx, vn, devE, wire.UpdateMemberRequest{IsExitNode: &yes}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.UpdateMember(ctx, vn, devA, wire.UpdateMemberRequest{
			ExitNode: wire.NullableString{Set: true, Valid: true, Value: devE}}); err != nil {
			t.Fatal(err)
		}
		vipE := e.vip4(t)
		// The selection reaches A with its next heartbeat (30 s ± 10%).
		waitFor(t, 75*time.Second, "A uses the exit", func() bool { return a.net(t).Exit == vipE })
		for u, want := range urls {
			var got string
			waitFor(t, 20*time.Second, "GET "+u+" from A", func() bool {
				var err error
				got, err = fetch(tp.edgeA, u, 2*time.Second)
				return err == nil
			})
			if got != want {
				t.Fatalf("inet saw A's request to %s from %s, want the exit's uplink %s", u, got, want)
			}
		}
		// No loop: the nucleus and the underlay stay reachable, and so does B.
		if !netns.PingOK(tp.edgeA, nucleusIP, 10) || !a.net(t).Registered || !netns.PingOK(tp.edgeA, b.vip4(t), 15) {
			t.Fatal("nucleus, underlay or peer lost while using the exit")
		}

		if _, err := admin.UpdateMember(ctx, vn, devA, wire.UpdateMemberRequest{ExitNode: wire.Null()}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 75*time.Second, "A stops using the exit", func() bool { return a.net(t).Exit == "" })
		for _, fam := range []string{"-4", "-6"} {
			if routes := netns.Run(t, "ip", fam, "-n", tp.edgeA, "route", "show", "table", "all"); strings.Contains(routes, "default dev "+a.net(t).Interface) {
				t.Fatalf("%s default route through the tunnel left after clearing the exit:\n%s", fam, routes)
			}
		}
		for u := range urls {
			if _, err := fetch(tp.edgeA, u, 2*time.Second); err == nil {
				t.Fatalf("%s still reachable from A after clearing the exit", u)
			}
		}
		if !netns.PingOK(tp.edgeA, b.vip4(t), 15) {
			t.Fatal("A cannot ping B after clearing the exit")
		}
	})

	t.Run("expire", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		devB, vipB := b.status(t).DeviceID, b.vip4(t)
		if !netns.PingOK(tp.edgeA, vipB, 10) {
			t.Fatal("A cannot ping B before the expiry")
		}
		start := time.Now()
		if _, err := admin.ExpireDeviceKey(ctx, devB); err != nil {
			t.Fatal(err)
		}
		// The nucleus reloads the network on the notice, drops B and pushes
		// its leave to A.
		waitFor(t, 5*time.Second, "A drops B after its key expired", func() bool { _, ok := a.peer(t, pubB); return !ok })
		t.Logf("A dropped B %v after the expiry", time.Since(start).Round(time.Millisecond))
		if netns.PingOK(tp.edgeA, vipB, 2) {
			t.Fatal("A still reaches B after its key expired")
		}
		// B's daemon cannot renew its way back on its security key, which
		// predates the expiry: it stops at its next heartbeat (30 s ± 10%).
		select {
		case <-b.done:
		case <-time.After(45 * time.Second):
			t.Fatalf("B's daemon still runs after its key expired:\n%s", b.logs)
		}
		if !strings.Contains(b.logs.String(), "owner expired this device's key") {
			t.Fatalf("B stopped without saying why:\n%s", b.logs)
		}
		// Restored with a security key created since: B registers a new key
		// and A reaches it again, for the steps after this one.
		k, err := admin.CreateSecurityKey(ctx, wire.CreateSecurityKeyRequest{Name: "b again"})
		if err != nil {
			t.Fatal(err)
		}
		b = startEdgeState(top, cp, "b", tp.edgeB, b.state, k.Key, vn)
		if pub := b.status(t).PublicKey; pub == pubB {
			t.Fatal("B came back with its expired key")
		} else {
			pubB = pub
		}
		if !netns.PingOK(tp.edgeA, b.vip4(t), 20) {
			t.Fatal("A cannot ping B after B registered a new key")
		}
	})

	t.Run("leave", func(t *testing.T) {
		if a == nil {
			t.Skip("needs the direct step")
		}
		vipB := b.vip4(t)
		if _, ok := a.peer(t, pubB); !ok {
			t.Fatal("B is not a peer of A before leaving")
		}
		if err := admin.Leave(ctx, vn, b.status(t).DeviceID); err != nil {
			t.Fatal(err)
		}
		// One push: the nucleus tells A at once.
		waitFor(t, 10*time.Second, "A drops B", func() bool { _, ok := a.peer(t, pubB); return !ok })
		if netns.PingOK(tp.edgeA, vipB, 3) {
			t.Fatal("A still reaches B after B left")
		}
	})

	t.Run("other network", func(t *testing.T) {
		if e == nil {
			t.Skip("needs the exit step")
		}
		// A member's identity (the exit's key pair, which A accepts) in the
		// hands of a device of another network: it knows A's key and
		// reaches A's socket directly on A's LAN, but holds the other
		// network's secret.
		var id struct {
			PrivateKey wgkey.Key `json:"private_key"`
		}
		raw, err := os.ReadFile(filepath.Join(e.state, "identity.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &id); err != nil {
			t.Fatal(err)
		}
		keyA, err := wgkey.Parse(pubA)
		if err != nil {
			t.Fatal(err)
		}
		portA := udpPort(t, tp.edgeA)
		vipA := a.vip4(t)
		na := a.net(t)
		bits, _ := strconv.Atoi(strings.Split(na.VirtualIP, "/")[1])
		intruderAddr := netip.PrefixFrom(netip.MustParseAddr(e.vip4(t)), bits)

		const other = "other@example.com"
		otherKey := cp.seedUser(t, other)
		otherVN := cp.seedNetwork(t, other, "elsewhere")
		oc := cp.client(t, otherKey)
		dev, err := oc.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "intruder", HardwareUUID: "hw-intruder", Platform: "linux"})
		if err != nil {
			t.Fatal(err)
		}
		otherJoin, err := oc.Join(ctx, otherVN, dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		ownJoin, err := admin.Join(ctx, vn, e.status(t).DeviceID) // the same answer again: the network's secret
		if err != nil {
			t.Fatal(err)
		}
		if otherJoin.SecretKey == ownJoin.SecretKey {
			t.Fatal("two networks share a secret")
		}

		c := tp.lanHost(t, tp.natA, "edgeC")
		peerA := []tunnel.Peer{{PublicKey: keyA, Endpoint: netip.AddrPortFrom(netip.MustParseAddr(edgeALan), portA), Addr4: netip.MustParseAddr(vipA)}}
		stop := startIntruder(t, c, tunnelHelperConfig{Private: id.PrivateKey, Secret: []byte(otherJoin.SecretKey), Addr4: intruderAddr, Peers: peerA})
		if netns.PingOK(c, vipA, 5) {
			t.Fatal("a device with another network's secret completed a handshake with A")
		}
		stop()

		// Control: the same device with this network's secret gets through,
		// so the refusal above was the secret's doing.
		ok := false
		for _, secret := range secretForms(ownJoin.SecretKey) {
			stop := startIntruder(t, c, tunnelHelperConfig{Private: id.PrivateKey, Secret: secret, Addr4: intruderAddr, Peers: peerA})
			ok = netns.PingOK(c, vipA, 15)
			stop()
			if ok {
				break
			}
		}
		if !ok {
			t.Fatal("control failed: the member's key with the network's secret does not reach A either")
		}
	})
}

// secretForms returns the network secret as text and, when it decodes, as
// the base64url bytes it encodes.
func secretForms(s string) [][]byte {
	forms := [][]byte{[]byte(s)}
	if b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
		forms = append(forms, b)
	}
	return forms
}

// udpPort returns the port of the one UDP socket bound in ns (the edge's),
// leaving out the device's name server (port 53 on its tunnel address).
func udpPort(t *testing.T, ns string) uint16 {
	t.Helper()
	out := netns.Run(t, "ip", "netns", "exec", ns, "ss", "-H", "-u", "-l", "-n")
	var ports []uint16
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		_, p, err := net.SplitHostPort(f[3])
		if err != nil {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err == nil && n != 53 && !containsPort(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	if len(ports) != 1 {
		t.Fatalf("want one UDP port in %s, got %v:\n%s", ns, ports, out)
	}
	return ports[0]
}

func containsPort(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}
