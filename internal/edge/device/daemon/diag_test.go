package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
)

type echoCall struct {
	src, dst netip.Addr
	seq      int
}

// fakePinger answers every echo after rtt, or (block) only ends with its
// context.
type fakePinger struct {
	started chan struct{} // one per blocked echo

	mu    sync.Mutex
	rtt   time.Duration
	block bool
	calls []echoCall
}

func (f *fakePinger) Echo(ctx context.Context, src, dst netip.Addr, seq int) (time.Duration, error) {
	f.mu.Lock()
	f.calls = append(f.calls, echoCall{src, dst, seq})
	block, rtt := f.block, f.rtt
	f.mu.Unlock()
	if !block {
		return rtt, nil
	}
	f.started <- struct{}{}
	<-ctx.Done()
	return 0, ctx.Err()
}

func (f *fakePinger) last() echoCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

// tunnelOf returns the fake tunnel and session of a network.
func tunnelOf(t *testing.T, tuns []*fakeTunnel, sess []*fakeSession, id string) (*fakeTunnel, *fakeSession) {
	t.Helper()
	for i, tu := range tuns {
		if tu.cfg.NetworkID == id {
			return tu, sess[i]
		}
	}
	t.Fatalf("no tunnel for network %s", id)
	return nil, nil
}

// `omni edge ping` through the control socket: the daemon resolves full
// and short names and addresses of its networks' members, refuses unknown,
// ambiguous, offline and own targets, pings from the network's own
// address, reports the path in use, times out on its clock and caps the
// pings in flight. Status names the peers.
func TestPingOverTheControlSocket(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := t.TempDir()
	names := &fakeNames{zones: map[string][]NameRecord{}, addrs: map[string]netip.Addr{}}
	pinger := &fakePinger{rtt: 1500 * time.Microsecond, started: make(chan struct{}, maxPings)}
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "Robot 7", StateDir: dir},
		func(d *Deps) { d.Names, d.Pinger = names, pinger })
	tuns, sess := r.dp.waitTunnels(t, 2)
	home, homeSess := tunnelOf(t, tuns, sess, w.nets[0].ID)
	defer func() {
		if t.Failed() {
			t.Log(r.logs.String())
		}
	}()
	var exit NameRecord
	testenv.Eventually(t, "both zones known", func() bool {
		var ok bool
		exit, ok = names.lookup("home.omni.internal", "exit.home.omni.internal")
		_, lab := names.lookup("lab.omni.internal", "exit.lab.omni.internal")
		return ok && lab
	})
	if got := homeSess.peerName(exit.IPv4); got != "exit.home.omni.internal" {
		t.Fatalf("the session's PeerName hook names %v %q", exit.IPv4, got)
	}
	direct := netip.MustParseAddrPort("198.51.100.7:41641")
	home.mu.Lock()
	home.status.Peers = []PeerStatus{{PublicKey: worldExitKey, VirtualIP: exit.IPv4, VirtualIPv6: exit.IPv6, Endpoint: direct,
		Path: PathDirect, LastHandshake: r.clk.Now()}}
	home.mu.Unlock()

	st, err := Query(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Networks {
		if n.ID != w.nets[0].ID {
			continue
		}
		if len(n.Peers) != 1 || n.Peers[0].Name != "exit" || n.Peers[0].DNSName != "exit.home.omni.internal" {
			t.Fatalf("status of home names its peer %+v, want exit / exit.home.omni.internal", n.Peers)
		}
	}

	for _, target := range []string{"exit.home", "EXIT.home.omni.internal.", exit.IPv4.String(), " exit.home.omni.internal "} {
		rep, err := Ping(ctx, dir, PingRequest{Target: target, Seq: 3})
		if err != nil {
			t.Fatalf("ping %q: %v", target, err)
		}
		want := PingReply{Network: "home", NetworkID: w.nets[0].ID, Name: "exit", DNSName: "exit.home.omni.internal",
			PublicKey: worldExitKey.String(), VirtualIP: exit.IPv4.String(), Seq: 3, Replied: true, LatencyMS: 1.5,
			Path: PathDirect, Endpoint: direct.String()}
		if rep != want {
			t.Fatalf("ping %q:\n got %+v\nwant %+v", target, rep, want)
		}
		if c := pinger.last(); c.src != home.cfg.VirtualIP.Addr() || c.dst != exit.IPv4 || c.seq != 3 {
			t.Fatalf("echo %+v, want from %v to %v", c, home.cfg.VirtualIP, exit.IPv4)
		}
	}
	rep, err := Ping(ctx, dir, PingRequest{Target: exit.IPv6.String(), Seq: 1})
	if err != nil || !rep.Replied || rep.VirtualIP != exit.IPv6.String() || rep.Name != "exit" {
		t.Fatalf("ping over IPv6: %+v %v", rep, err)
	}
	if c := pinger.last(); c.src != home.cfg.VirtualIPv6.Addr() || c.dst != exit.IPv6 {
		t.Fatalf("echo over IPv6 %+v, want from %v", c, home.cfg.VirtualIPv6)
	}

	for target, want := range map[string]string{
		"exit":                             "ambiguous: exit.",        // a member of both networks
		"exit.lab":                         "is not connected",        // no peer in lab's tunnel
		"nobody":                           `unknown peer "nobody"`,   // no such member
		"100.127.1.1":                      "no peer has the address", // nobody's address
		"robot-7.home":                     "robot-7.home.omni.internal is this device",
		home.cfg.VirtualIP.Addr().String(): "this device's own address",
		"":                                 "no target",
	} {
		if _, err := Ping(ctx, dir, PingRequest{Target: target}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ping %q: %v; want an error saying %q", target, err, want)
		}
	}

	// No reply: the wait ends on the daemon's clock; the path is relayed
	// by then. At most maxPings wait at once.
	relay := netip.MustParseAddrPort("192.0.2.1:51820")
	home.mu.Lock()
	home.status.Peers[0].Path, home.status.Peers[0].Endpoint = PathRelayed, relay
	home.mu.Unlock()
	pinger.mu.Lock()
	pinger.block = true
	pinger.mu.Unlock()
	type result struct {
		rep PingReply
		err error
	}
	results := make(chan result, maxPings)
	for i := range maxPings {
		go func() {
			rep, err := Ping(ctx, dir, PingRequest{Target: "exit.home", Seq: i, TimeoutMS: 2000})
			results <- result{rep, err}
		}()
	}
	for range maxPings {
		select {
		case <-pinger.started:
		case <-time.After(testenv.DefaultWait):
			t.Fatal("the pings did not start")
		}
	}
	if _, err := Ping(ctx, dir, PingRequest{Target: "exit.home"}); err == nil || !strings.Contains(err.Error(), "too many pings") {
		t.Fatalf("a ping over the cap: %v", err)
	}
	r.clk.wait(t, 1+maxPings) // the heartbeat and each ping's timeout
	r.clk.Advance(2 * time.Second)
	for range maxPings {
		select {
		case res := <-results:
			if res.err != nil || res.rep.Replied || !strings.Contains(res.rep.Error, "no reply within 2s") ||
				res.rep.Path != PathRelayed || res.rep.Endpoint != relay.String() || res.rep.Nucleus != home.cfg.Nucleus {
				t.Fatalf("unanswered ping: %+v %v", res.rep, res.err)
			}
		case <-time.After(testenv.DefaultWait):
			t.Fatal("the pings did not time out")
		}
	}
}

// `omni edge netcheck` through the control socket: each network's
// session probes its nucleus and the daemon judges the NAT.
func TestNetcheckOverTheControlSocket(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	dir := t.TempDir()
	r := start(t, Config{Server: w.proxy.URL, SecurityKey: w.user.Key, Name: "robot", StateDir: dir})
	tuns, sess := r.dp.waitTunnels(t, 2)
	_, home := tunnelOf(t, tuns, sess, w.nets[0].ID)
	_, lab := tunnelOf(t, tuns, sess, w.nets[1].ID)
	home.mu.Lock()
	home.probe = NucleusProbe{Server: netip.MustParseAddrPort("198.51.100.1:51820"), Registered: true,
		RTTs: []time.Duration{3 * time.Millisecond, 2 * time.Millisecond, 4500 * time.Microsecond}, LastRTT: 5 * time.Millisecond,
		Observed: netip.MustParseAddrPort("203.0.113.9:61000"), LocalPort: 51820, HostAddrs: []netip.Addr{netip.MustParseAddr("192.168.1.10")},
		Local: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.10:51820")}}
	home.mu.Unlock()
	lab.mu.Lock()
	lab.probe = NucleusProbe{Server: netip.MustParseAddrPort("198.51.100.1:51820"), LocalPort: 51821}
	lab.probeErr = errors.New("not registered with the nucleus")
	lab.mu.Unlock()

	rep, err := Netcheck(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Networks) != 2 {
		t.Fatalf("netcheck %+v", rep)
	}
	for _, n := range rep.Networks {
		switch n.ID {
		case w.nets[0].ID:
			if !n.UDP || n.Probes != netcheckProbes || !slices.Equal(n.RTTMS, []float64{3, 2, 4.5}) || n.LatencyMS != 2 ||
				n.KeepaliveRTTMS != 5 || n.Observed != "203.0.113.9:61000" || n.LocalPort != 51820 || n.NucleusAddr != "198.51.100.1:51820" ||
				!slices.Equal(n.LocalEndpoints, []string{"192.168.1.10:51820"}) || n.NAT != NATPortRewriting ||
				!strings.Contains(n.NATNote, "symmetric") || n.Error != "" || n.Name != "home" || n.Nucleus == "" {
				t.Errorf("home: %+v", n)
			}
		default:
			if n.UDP || n.NAT != NATUnknown || !strings.Contains(n.Error, "not registered") || n.LocalPort != 51821 {
				t.Errorf("lab: %+v", n)
			}
		}
	}

	// Without a pinger the daemon says so.
	if _, err := Ping(ctx, dir, PingRequest{Target: "exit.home"}); err == nil || !strings.Contains(err.Error(), "cannot ping") {
		t.Fatalf("ping without a pinger: %v", err)
	}
}

func TestClassifyNAT(t *testing.T) {
	lan := netip.MustParseAddr("192.168.1.10")
	for _, c := range []struct {
		observed string
		want     string
	}{
		{"192.168.1.10:51820", NATNone},
		{"203.0.113.9:51820", NATPortPreserving},
		{"203.0.113.9:61000", NATPortRewriting},
		{"192.168.1.10:61000", NATPortRewriting},
		{"", NATUnknown},
	} {
		p := NucleusProbe{LocalPort: 51820, HostAddrs: []netip.Addr{lan}}
		if c.observed != "" {
			p.Observed = netip.MustParseAddrPort(c.observed)
		}
		if got, note := classifyNAT(p); got != c.want || note == "" {
			t.Errorf("observed %q: %s (%s), want %s", c.observed, got, note, c.want)
		}
	}
}
