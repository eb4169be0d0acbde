package names

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var loop4 = netip.MustParseAddr("127.0.0.1")

// newServer starts a Server on 127.0.0.1 and any port; prepare runs
// before Listen (to replace isLocal).
func newServer(t *testing.T, opt Options, prepare func(*Server)) (*Server, string) {
	t.Helper()
	opt.Port = -1
	s := NewServer(opt)
	if prepare != nil {
		prepare(s)
	}
	if err := s.Listen(loop4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addrs := s.Addrs()
	if len(addrs) != 1 || addrs[0].Addr() != loop4 || addrs[0].Port() == 0 {
		t.Fatalf("Addrs() = %v", addrs)
	}
	return s, addrs[0].String()
}

func query(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(network, addr, name, qtype)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func exchange(network, addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Id != m.Id {
		return nil, errMismatch
	}
	return r, err
}

var homeRecs = []Record{
	{Name: "robot.home.omni.internal", IPv4: netip.MustParseAddr("100.64.0.7"), IPv6: netip.MustParseAddr("fd00:1::7")},
	{Name: "Laptop.Home.Omni.Internal.", IPv4: netip.MustParseAddr("100.64.0.8")},
	{Name: "v6only.home.omni.internal", IPv6: netip.MustParseAddr("fd00:1::9")},
}

func wantRcode(t *testing.T, r *dns.Msg, rcode int) {
	t.Helper()
	if r.Rcode != rcode {
		t.Fatalf("rcode %s, want %s: %v", dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode], r)
	}
}

// wantNegative checks a NODATA/NXDOMAIN answer: no answer, the zone's SOA
// (minimum 5) in the authority section, authoritative.
func wantNegative(t *testing.T, r *dns.Msg, rcode int, zone string) {
	t.Helper()
	wantRcode(t, r, rcode)
	if len(r.Answer) != 0 || !r.Authoritative || len(r.Ns) != 1 {
		t.Fatalf("want a negative authoritative answer with an SOA: %v", r)
	}
	soa, ok := r.Ns[0].(*dns.SOA)
	if !ok || soa.Hdr.Name != zone+"." || soa.Minttl != 5 || soa.Hdr.Ttl != 5 {
		t.Fatalf("authority %v", r.Ns)
	}
}

func TestZoneAnswers(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, addr, "robot.home.omni.internal", dns.TypeA)
		wantRcode(t, r, dns.RcodeSuccess)
		if len(r.Answer) != 1 || !r.Authoritative {
			t.Fatalf("%s: %v", network, r)
		}
		a := r.Answer[0].(*dns.A)
		if a.A.String() != "100.64.0.7" || a.Hdr.Ttl != 5 || a.Hdr.Name != "robot.home.omni.internal." {
			t.Fatalf("%s: %v", network, a)
		}
	}
	// Case-insensitive both ways; the answer keeps the question's case.
	r := query(t, "udp", addr, "LAPTOP.home.OMNI.internal", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "100.64.0.8" || r.Answer[0].Header().Name != "LAPTOP.home.OMNI.internal." {
		t.Fatalf("%v", r)
	}
	r = query(t, "udp", addr, "robot.home.omni.internal", dns.TypeAAAA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd00:1::7" || r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("%v", r)
	}
	wantNegative(t, query(t, "udp", addr, "laptop.home.omni.internal", dns.TypeAAAA), dns.RcodeSuccess, "home.omni.internal")
	wantNegative(t, query(t, "udp", addr, "v6only.home.omni.internal", dns.TypeA), dns.RcodeSuccess, "home.omni.internal")
	wantNegative(t, query(t, "udp", addr, "robot.home.omni.internal", dns.TypeTXT), dns.RcodeSuccess, "home.omni.internal")
	wantNegative(t, query(t, "udp", addr, "robot.home.omni.internal", dns.TypeMX), dns.RcodeSuccess, "home.omni.internal")
	wantNegative(t, query(t, "udp", addr, "nobody.home.omni.internal", dns.TypeA), dns.RcodeNameError, "home.omni.internal")
	wantNegative(t, query(t, "tcp", addr, "a.b.home.omni.internal", dns.TypeA), dns.RcodeNameError, "home.omni.internal")
	wantNegative(t, query(t, "udp", addr, "home.omni.internal", dns.TypeA), dns.RcodeSuccess, "home.omni.internal")
	r = query(t, "udp", addr, "home.omni.internal", dns.TypeSOA)
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA || !r.Authoritative {
		t.Fatalf("apex SOA: %v", r)
	}
	r = query(t, "udp", addr, "robot.home.omni.internal", dns.TypeANY)
	if len(r.Answer) != 2 {
		t.Fatalf("ANY: %v", r)
	}

	// PTR for the records' addresses.
	for ip, want := range map[string]string{"100.64.0.7": "robot.home.omni.internal.", "fd00:1::9": "v6only.home.omni.internal."} {
		rev, _ := dns.ReverseAddr(ip)
		r := query(t, "udp", addr, strings.ToUpper(rev), dns.TypePTR)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != want || !r.Authoritative {
			t.Fatalf("PTR %s: %v", ip, r)
		}
	}

	// EDNS is answered with EDNS.
	m := new(dns.Msg)
	m.SetQuestion("robot.home.omni.internal.", dns.TypeA)
	m.SetEdns0(4096, false)
	r, err := dns.Exchange(m, addr)
	if err != nil || r.IsEdns0() == nil || len(r.Answer) != 1 {
		t.Fatalf("EDNS: %v %v", r, err)
	}

	// SetZone replaces; RemoveZone forgets (no upstream: SERVFAIL).
	s.SetZone("HOME.omni.internal.", []Record{{Name: "new.home.omni.internal", IPv4: netip.MustParseAddr("100.64.0.10")}})
	wantNegative(t, query(t, "udp", addr, "robot.home.omni.internal", dns.TypeA), dns.RcodeNameError, "home.omni.internal")
	if r := query(t, "udp", addr, "new.home.omni.internal", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}
	s.RemoveZone("home.omni.internal")
	wantRcode(t, query(t, "udp", addr, "new.home.omni.internal", dns.TypeA), dns.RcodeServerFailure)
}

func TestSetZoneLimits(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	long := strings.Repeat(strings.Repeat("a", 60)+".", 4) + "z.omni.internal" // 261 bytes
	recs := []Record{
		{Name: long, IPv4: netip.MustParseAddr("100.64.0.1")},
		{Name: "other.lab.omni.internal", IPv4: netip.MustParseAddr("100.64.0.2")},
		{Name: "z.omni.internal.evil", IPv4: netip.MustParseAddr("100.64.0.3")},
		{Name: "bad..z.omni.internal", IPv4: netip.MustParseAddr("100.64.0.4")},
	}
	for i := 0; i < MaxZoneRecords+10; i++ {
		recs = append(recs, Record{Name: "d" + strconv.Itoa(i) + ".z.omni.internal", IPv4: netip.MustParseAddr("100.64.1.1")})
	}
	s.SetZone("z.omni.internal", recs)
	s.mu.RLock()
	n := len(s.zones["z.omni.internal"].recs)
	s.mu.RUnlock()
	if n != MaxZoneRecords {
		t.Fatalf("%d records kept, want %d", n, MaxZoneRecords)
	}
	wantRcode(t, query(t, "udp", addr, "d0.z.omni.internal", dns.TypeA), dns.RcodeSuccess)
	wantRcode(t, query(t, "udp", addr, "d"+strconv.Itoa(MaxZoneRecords+5)+".z.omni.internal", dns.TypeA), dns.RcodeNameError)
	// Not under the zone: not answered from it (no upstream: SERVFAIL).
	wantRcode(t, query(t, "udp", addr, "other.lab.omni.internal", dns.TypeA), dns.RcodeServerFailure)
	s.SetZone("bad zone\n", nil)
	s.SetZone(strings.Repeat("x", 300), nil)
	s.mu.RLock()
	zones := len(s.zones)
	s.mu.RUnlock()
	if zones != 1 {
		t.Fatalf("%d zones, invalid ones were kept", zones)
	}
}

// upstream is a fake nameserver on 127.0.0.1 (UDP and TCP on one port).
type upstream struct {
	addr    netip.AddrPort
	queries atomic.Int32
	udp     *dns.Server
	tcp     *dns.Server
}

func newUpstream(t *testing.T, handle func(w dns.ResponseWriter, r *dns.Msg)) *upstream {
	t.Helper()
	u := &upstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		handle(w, r)
	})
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if try < 10 {
				continue
			}
			t.Fatal(err)
		}
		u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		u.udp = &dns.Server{PacketConn: pc, Handler: h}
		u.tcp = &dns.Server{Listener: ln, Handler: h}
		break
	}
	for _, srv := range []*dns.Server{u.udp, u.tcp} {
		if err := start(srv); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { u.udp.Shutdown(); u.tcp.Shutdown() })
	return u
}

// answerA answers every A query with 192.0.2.1 (n times).
func answerA(n int) func(w dns.ResponseWriter, r *dns.Msg) {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for i := 0; i < n; i++ {
			rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2." + strconv.Itoa(1+i%250))
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	}
}

func TestForward(t *testing.T) {
	var gotID atomic.Uint32
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		gotID.Store(uint32(r.Id))
		answerA(1)(w, r)
	})
	s, addr := newServer(t, Options{Upstreams: []netip.AddrPort{up.addr}}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, addr, "example.com", dns.TypeA) // exchange checks the client's id
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Fatalf("%s: %v", network, r)
		}
	}
	// Our zones are never forwarded.
	before := up.queries.Load()
	query(t, "udp", addr, "nobody.home.omni.internal", dns.TypeA)
	if up.queries.Load() != before {
		t.Fatal("a query in a zone was forwarded")
	}
	// A PTR not of ours is forwarded.
	rev, _ := dns.ReverseAddr("192.0.2.77")
	query(t, "udp", addr, rev, dns.TypePTR)
	if up.queries.Load() != before+1 {
		t.Fatal("a foreign PTR query was not forwarded")
	}
	// SetUpstreams replaces them.
	s.SetUpstreams(nil)
	wantRcode(t, query(t, "udp", addr, "example.com", dns.TypeA), dns.RcodeServerFailure)
}

func TestForwardTruncatedRetriesTCP(t *testing.T) {
	var udpQueries, tcpQueries atomic.Int32
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			udpQueries.Add(1)
			m := new(dns.Msg)
			m.SetReply(r)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
		tcpQueries.Add(1)
		answerA(100)(w, r) // larger than 512 bytes
	})
	_, addr := newServer(t, Options{Upstreams: []netip.AddrPort{up.addr}}, nil)
	r := query(t, "tcp", addr, "big.example.com", dns.TypeA)
	if len(r.Answer) != 100 || r.Truncated {
		t.Fatalf("tcp client: %d answers, truncated %v", len(r.Answer), r.Truncated)
	}
	if udpQueries.Load() != 1 || tcpQueries.Load() != 1 {
		t.Fatalf("upstream saw %d UDP and %d TCP queries; want one each", udpQueries.Load(), tcpQueries.Load())
	}
	// A UDP client gets what fits in 512 bytes, marked truncated.
	m := new(dns.Msg)
	m.SetQuestion("big.example.com.", dns.TypeA)
	r, _, err := (&dns.Client{Net: "udp"}).Exchange(m, addr)
	r.Compress = true
	if err != nil || !r.Truncated || r.Len() > 512 || r.Id != m.Id {
		t.Fatalf("udp client: %v, err %v", r, err)
	}
}

func TestForwardTimeoutTriesNext(t *testing.T) {
	// A UDP socket that reads and never answers.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	deadAddr := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	good := newUpstream(t, answerA(1))
	servfail := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})
	s, addr := newServer(t, Options{Timeout: 200 * time.Millisecond,
		Upstreams: []netip.AddrPort{deadAddr, servfail.addr, good.addr}}, nil)
	start := time.Now()
	r := query(t, "udp", addr, "example.com", dns.TypeA)
	if len(r.Answer) != 1 || servfail.queries.Load() != 1 {
		t.Fatalf("%v (servfail upstream asked %d times)", r, servfail.queries.Load())
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("answered after %v", d)
	}
	s.SetUpstreams([]netip.AddrPort{deadAddr})
	wantRcode(t, query(t, "udp", addr, "example.com", dns.TypeA), dns.RcodeServerFailure)
}

func TestForwardNeverToItself(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	s.SetUpstreams([]netip.AddrPort{netip.MustParseAddrPort(addr)})
	wantRcode(t, query(t, "udp", addr, "example.com", dns.TypeA), dns.RcodeServerFailure)
}

func TestForwardInflightCap(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	up := newUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		arrived <- struct{}{}
		<-release
		answerA(1)(w, r)
	})
	_, addr := newServer(t, Options{MaxInflight: 1, Timeout: 5 * time.Second, Upstreams: []netip.AddrPort{up.addr}}, nil)
	first := make(chan *dns.Msg, 1)
	go func() {
		r, _ := exchange("udp", addr, "slow.example.com", dns.TypeA)
		first <- r
	}()
	<-arrived
	start := time.Now()
	wantRcode(t, query(t, "udp", addr, "second.example.com", dns.TypeA), dns.RcodeServerFailure)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("SERVFAIL past the cap took %v", d)
	}
	if n := up.queries.Load(); n != 1 {
		t.Fatalf("upstream saw %d queries past the cap", n)
	}
	close(release)
	if r := <-first; r == nil || len(r.Answer) != 1 {
		t.Fatalf("first query: %v", r)
	}
	// The slot is free again.
	if r := query(t, "udp", addr, "third.example.com", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}
}

func TestForeignSourceRefused(t *testing.T) {
	up := newUpstream(t, answerA(1))
	s, addr := newServer(t, Options{Upstreams: []netip.AddrPort{up.addr}}, func(s *Server) {
		s.isLocal = func(a netip.Addr) bool { return a != loop4 } // 127.0.0.1 is foreign here
	})
	s.SetZone("home.omni.internal", homeRecs)
	for _, name := range []string{"robot.home.omni.internal", "example.com"} {
		r := query(t, "udp", addr, name, dns.TypeA)
		wantRcode(t, r, dns.RcodeRefused)
		if len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 {
			t.Fatalf("REFUSED carries records: %v", r)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Fatalf("a foreign query was forwarded (%d)", n)
	}
	// TCP from a foreign source: closed when accepted.
	if r, err := exchange("tcp", addr, "robot.home.omni.internal", dns.TypeA); err == nil {
		t.Fatalf("tcp query from a foreign source answered: %v", r)
	}
	if n := up.queries.Load(); n != 0 {
		t.Fatalf("a foreign query was forwarded (%d)", n)
	}
}

func TestDefaultIsLocal(t *testing.T) {
	s := NewServer(Options{})
	tunnel := netip.MustParseAddr("100.64.0.5")
	s.listeners[tunnel] = &listener{} // as if Listen(tunnel) had run
	defer delete(s.listeners, tunnel)
	for a, want := range map[string]bool{
		"127.0.0.1": true, "127.3.4.5": true, "::1": true, "::ffff:127.0.0.1": true,
		"100.64.0.5": true, "::ffff:100.64.0.5": true,
		"100.64.0.6": false, "192.168.1.20": false, "fd00::5": false, "8.8.8.8": false,
	} {
		if got := s.isLocal(netip.MustParseAddr(a)); got != want {
			t.Errorf("isLocal(%s) = %v, want %v", a, got, want)
		}
	}
	if s.isLocal(netip.Addr{}) {
		t.Error("an invalid address is local")
	}
}

func TestOversizeAndMalformedQueries(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	noReply := func(what string, b []byte) {
		t.Helper()
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 2048)
		if n, err := c.Read(buf); err == nil {
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) == nil && m.Rcode != dns.RcodeFormatError {
				t.Fatalf("%s: answered %v", what, m)
			}
		}
	}
	// A valid query padded past 512 bytes.
	big := new(dns.Msg)
	big.SetQuestion("robot.home.omni.internal.", dns.TypeA)
	big.SetEdns0(4096, false)
	big.IsEdns0().Option = append(big.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 600)})
	b, err := big.Pack()
	if err != nil || len(b) <= 512 {
		t.Fatal(len(b), err)
	}
	noReply("oversize", b)
	// A header promising a question that is not there; garbage; a response.
	noReply("truncated question", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b'})
	noReply("short", []byte{1, 2, 3})
	noReply("garbage", []byte(strings.Repeat("\xff", 100)))
	resp := new(dns.Msg)
	resp.SetQuestion("robot.home.omni.internal.", dns.TypeA)
	resp.Response = true
	b, _ = resp.Pack()
	noReply("response", b)
	// An UPDATE is not implemented.
	upd := new(dns.Msg)
	upd.SetUpdate("home.omni.internal.")
	r, _, err := (&dns.Client{}).Exchange(upd, addr)
	if err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("UPDATE: %v %v", r, err)
	}
	// Garbage over TCP.
	tc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte{0, 20, 0xff, 0xff, 0xff})
	tc.Close()
	// Still serving.
	if r := query(t, "udp", addr, "robot.home.omni.internal", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}
}

func TestTCPConnectionLimit(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < MaxTCPConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Make sure all are accepted: a query on the last one is answered.
	co := &dns.Conn{Conn: conns[len(conns)-1]}
	m := new(dns.Msg)
	m.SetQuestion("robot.home.omni.internal.", dns.TypeA)
	if err := co.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Fatalf("%v %v", r, err)
	}
	if _, err := exchange("tcp", addr, "robot.home.omni.internal", dns.TypeA); err == nil {
		t.Fatal("a connection past the limit was served")
	}
	conns[0].Close()
	conns = conns[1:]
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := exchange("tcp", addr, "robot.home.omni.internal", dns.TypeA)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTCPIdleConnectionClosed(t *testing.T) {
	t.Parallel()
	s, addr := newServer(t, Options{}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &dns.Conn{Conn: c}
	m := new(dns.Msg)
	m.SetQuestion("robot.home.omni.internal.", dns.TypeA)
	if err := co.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Fatalf("%v %v", r, err)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(TCPIdleTimeout + 3*time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
	if d := time.Since(start); d < TCPIdleTimeout-time.Second || d > TCPIdleTimeout+time.Second {
		t.Fatalf("closed after %v, want about %v", d, TCPIdleTimeout)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestListenUnlistenClose(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	s.SetZone("home.omni.internal", homeRecs)
	if err := s.Listen(netip.MustParseAddr("::ffff:127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); len(got) != 1 || got[0].String() != addr {
		t.Fatalf("Listen twice: %v", got)
	}
	if err := s.Listen(netip.IPv4Unspecified()); err == nil {
		t.Fatal("listening on 0.0.0.0 accepted")
	}
	if err := s.Listen(netip.MustParseAddr("127.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); len(got) != 2 {
		t.Fatalf("%v", got)
	}
	s.Unlisten(loop4)
	if got := s.Addrs(); len(got) != 1 || got[0].Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("%v", got)
	}
	if _, err := exchange("tcp", addr, "robot.home.omni.internal", dns.TypeA); err == nil {
		t.Fatal("answered after Unlisten")
	}
	second := s.Addrs()[0].String()
	query(t, "udp", second, "robot.home.omni.internal", dns.TypeA)
	s.Close()
	if len(s.Addrs()) != 0 {
		t.Fatal("Addrs after Close")
	}
	if err := s.Listen(loop4); err == nil {
		t.Fatal("Listen after Close accepted")
	}
}

func TestConcurrentUpdatesAndQueries(t *testing.T) {
	s, addr := newServer(t, Options{}, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetZone("home.omni.internal", homeRecs[:1+i%len(homeRecs)])
			s.SetUpstreams(nil)
		}
	}()
	for i := 0; i < 50; i++ {
		r := query(t, "udp", addr, "robot.home.omni.internal", dns.TypeA)
		if len(r.Answer) != 1 && r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%v", r)
		}
	}
	close(stop)
	wg.Wait()
}
