//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omniedge/omni/internal/platform/testenv/netns"
)

// The data-plane topology. Every namespace is created by the test and
// removed when it ends; only documentation and private ranges are used and
// nothing is routed out of the namespaces.
//
//	[edgeA 10.0.1.2] --lan-- [natA 10.0.1.1 | 198.51.100.10] --+
//	                                                            +-- [wan 198.51.100.1 (lo): the control plane and nucleus]
//	[edgeB 10.0.2.2] --lan-- [natB 10.0.2.1 | 198.51.100.14] --+            |
//	                                                         [exit 198.51.100.18 | 203.0.113.1, 2001:db8:113::1]
//	                                                                        |
//	                                                         [inet 203.0.113.10, 2001:db8:113::10]
//
// wan is a router with one /30 per neighbour, so traffic between natA and
// natB crosses its forward hook (where a test can drop it). natA and natB
// masquerade their LANs (plain, port-preserving MASQUERADE). inet has no
// route back: it only answers the exit's own addresses.
const (
	nucleusIP = "198.51.100.1"
	natAWan   = "198.51.100.10"
	natBWan   = "198.51.100.14"
	exitWan   = "198.51.100.18"
	edgeALan  = "10.0.1.2"
	edgeBLan  = "10.0.2.2"
	exitUp4   = "203.0.113.1"
	exitUp6   = "2001:db8:113::1"
	inetIP4   = "203.0.113.10"
	inetIP6   = "2001:db8:113::10"
)

type topology struct {
	tag                                       string // unique per run, in every namespace name
	wan, natA, natB, edgeA, edgeB, exit, inet string
	lanHosts                                  map[string]int // next host number per NAT namespace
}

// newTopology builds the topology above with fresh namespace names.
func newTopology(t *testing.T) *topology {
	t.Helper()
	tag := netns.Tag()
	tp := &topology{tag: tag, lanHosts: map[string]int{}}
	tp.wan = netns.New(t, "omnie2e-"+tag+"-wan")
	tp.natA = netns.New(t, "omnie2e-"+tag+"-natA")
	tp.natB = netns.New(t, "omnie2e-"+tag+"-natB")
	tp.exit = netns.New(t, "omnie2e-"+tag+"-exit")
	tp.inet = netns.New(t, "omnie2e-"+tag+"-inet")

	netns.Run(t, "ip", "-n", tp.wan, "addr", "add", nucleusIP+"/32", "dev", "lo")
	netns.Sysctl(t, tp.wan, "net.ipv4.ip_forward=1")
	netns.Veth(t, tp.wan, "toA", "198.51.100.9/30", tp.natA, "wan", natAWan+"/30")
	netns.Veth(t, tp.wan, "toB", "198.51.100.13/30", tp.natB, "wan", natBWan+"/30")
	netns.Veth(t, tp.wan, "toE", "198.51.100.17/30", tp.exit, "wan", exitWan+"/30")

	for _, n := range []struct{ ns, gw, lan string }{{tp.natA, "198.51.100.9", "10.0.1.1/24"}, {tp.natB, "198.51.100.13", "10.0.2.1/24"}} {
		netns.Run(t, "ip", "-n", n.ns, "route", "add", "default", "via", n.gw)
		netns.Sysctl(t, n.ns, "net.ipv4.ip_forward=1")
		netns.Run(t, "ip", "-n", n.ns, "link", "add", "lan", "type", "bridge")
		netns.Run(t, "ip", "-n", n.ns, "addr", "add", n.lan, "dev", "lan")
		netns.Run(t, "ip", "-n", n.ns, "link", "set", "lan", "up")
		netns.NFT(t, n.ns, `table ip omnie2e_nat {
	chain post { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade; }
}
`)
		tp.lanHosts[n.ns] = 2
	}
	tp.edgeA = tp.lanHost(t, tp.natA, "edgeA")
	tp.edgeB = tp.lanHost(t, tp.natB, "edgeB")

	netns.Run(t, "ip", "-n", tp.exit, "route", "add", "default", "via", "198.51.100.17")
	netns.Veth(t, tp.exit, "uplink", exitUp4+"/24 "+exitUp6+"/64", tp.inet, "eth0", inetIP4+"/24 "+inetIP6+"/64")
	return tp
}

// lanHost adds a namespace on the LAN of nat (10.0.1.N or 10.0.2.N, the
// next free N, default route through the NAT) and returns it.
func (tp *topology) lanHost(t *testing.T, nat, role string) string {
	t.Helper()
	ns := netns.New(t, "omnie2e-"+tp.tag+"-"+role)
	lan := "10.0.1."
	if nat == tp.natB {
		lan = "10.0.2."
	}
	n := tp.lanHosts[nat]
	tp.lanHosts[nat] = n + 1
	port := fmt.Sprintf("p%d", n)
	netns.Veth(t, nat, port, "", ns, "eth0", fmt.Sprintf("%s%d/24", lan, n))
	netns.Run(t, "ip", "-n", nat, "link", "set", port, "master", "lan")
	netns.Run(t, "ip", "-n", ns, "route", "add", "default", "via", lan+"1")
	return ns
}

// inNetns runs fn on an OS thread switched into the named namespace.
// Sockets fn creates stay in that namespace. It runs on its own goroutine
// so that a thread that cannot switch back is discarded with it.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err) // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// httpClientIn returns an HTTP client whose connections are made from ns.
func httpClientIn(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(ns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// echoServer serves, from ns on addr, the client's source IP as the body.
// It is closed when t ends.
func echoServer(t *testing.T, ns, addr string) {
	t.Helper()
	var l net.Listener
	if err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		_, _ = io.WriteString(w, host)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// fetch GETs url from ns and returns the body.
func fetch(ns, url string, timeout time.Duration) (string, error) {
	resp, err := httpClientIn(ns, timeout).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", url, resp.StatusCode, body)
	}
	return string(body), nil
}

// TestTopologyNAT checks the topology itself: both edges reach the wan
// address of the control plane through their NAT, which masquerades them
// to its own wan address; the LANs are private; only the exit reaches the
// "internet" namespace.
func TestTopologyNAT(t *testing.T) {
	netns.Require(t, "nft", "ping", "ss")
	tp := newTopology(t)
	echoServer(t, tp.wan, net.JoinHostPort(nucleusIP, "8081"))
	echoServer(t, tp.inet, "[::]:8081")

	for _, c := range []struct{ ns, want string }{{tp.edgeA, natAWan}, {tp.edgeB, natBWan}, {tp.exit, exitWan}} {
		if !netns.PingOK(c.ns, nucleusIP, 5) {
			t.Fatalf("%s cannot ping %s", c.ns, nucleusIP)
		}
		got, err := fetch(c.ns, "http://"+nucleusIP+":8081/", 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.ns, err)
		}
		if got != c.want {
			t.Fatalf("wan sees %s from %s, want %s", got, c.ns, c.want)
		}
	}
	// UDP is masqueraded too, to the NAT's wan address.
	var pc net.PacketConn
	if err := inNetns(tp.wan, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", nucleusIP+":51999")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	netns.Run(t, "ip", "netns", "exec", tp.edgeA, "bash", "-c", "echo x > /dev/udp/"+nucleusIP+"/51999")
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	_, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("UDP from edgeA: %v", err)
	}
	if host, _, _ := net.SplitHostPort(from.String()); host != natAWan {
		t.Fatalf("UDP from edgeA arrives from %s, want %s", from, natAWan)
	}

	if netns.PingOK(tp.edgeA, edgeBLan, 1) || netns.PingOK(tp.edgeB, edgeALan, 1) {
		t.Fatal("the private LANs reach each other")
	}
	if netns.PingOK(tp.edgeA, inetIP4, 1) {
		t.Fatal("edgeA reaches the internet namespace without an exit")
	}
	for _, u := range []string{"http://" + inetIP4 + ":8081/", "http://[" + inetIP6 + "]:8081/"} {
		got, err := fetch(tp.exit, u, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: exitUp4, false: exitUp6}[strings.Contains(u, inetIP4)]; got != want {
			t.Fatalf("inet sees %s from exit, want %s", got, want)
		}
	}
}
