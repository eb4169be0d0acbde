package names

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// MaxTCPConns is how many TCP connections the server holds at once; one
	// more is closed as soon as it is accepted.
	MaxTCPConns = 64
	// TCPIdleTimeout is how long a TCP connection may wait between queries.
	TCPIdleTimeout = 5 * time.Second
	// maxUDPQuery is the largest UDP query answered; larger ones are dropped.
	maxUDPQuery = dns.MinMsgSize
)

// Options configures a Server.
type Options struct {
	Upstreams   []netip.AddrPort // where queries outside every zone go; empty: answer them SERVFAIL
	Port        int              // 0: 53; negative: any free port per address (tests; Addrs reports the bound ones)
	Timeout     time.Duration    // per upstream attempt of a forwarded query, default 2 s
	MaxInflight int              // forwarded queries in flight at once, default 256; past it: SERVFAIL at once
	Log         *slog.Logger     // default discard
}

// Server is a DNS server for the networks' zones that forwards the rest.
// Its methods are safe for concurrent use.
type Server struct {
	opt     Options
	log     *slog.Logger
	sem     chan struct{} // forwarded queries in flight
	ctx     context.Context
	cancel  context.CancelFunc
	isLocal func(netip.Addr) bool // whether a query's source is the host itself

	mu        sync.RWMutex
	zones     map[string]*zone
	upstreams []netip.AddrPort
	serial    uint32

	opmu      sync.Mutex // held by Listen, Unlisten and Close throughout
	lmu       sync.Mutex // held to change listeners, and by queries to read it
	listeners map[netip.Addr]*listener
	closed    bool
}

type listener struct {
	udp, tcp *dns.Server
	addr     netip.AddrPort // the bound UDP address
}

// NewServer returns a Server answering nothing yet: give it zones with
// SetZone and addresses with Listen.
func NewServer(opt Options) *Server {
	switch {
	case opt.Port == 0:
		opt.Port = 53
	case opt.Port < 0:
		opt.Port = 0
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Second
	}
	if opt.MaxInflight <= 0 {
		opt.MaxInflight = 256
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opt:       opt,
		log:       opt.Log,
		sem:       make(chan struct{}, opt.MaxInflight),
		zones:     map[string]*zone{},
		listeners: map[netip.Addr]*listener{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.isLocal = s.defaultIsLocal
	s.SetUpstreams(opt.Upstreams)
	return s
}

// SetUpstreams replaces where queries outside every zone are forwarded.
func (s *Server) SetUpstreams(ups []netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreams = slices.Clone(ups)
}

// defaultIsLocal: a loopback address or one the server listens on.
func (s *Server) defaultIsLocal(a netip.Addr) bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	_, ok := s.listeners[a.Unmap().WithZone("")]
	return ok || a.Unmap().IsLoopback()
}

// Listen serves UDP and TCP on addr and Options.Port. It may be called for
// several addresses (one per network's tunnel address); a second call for
// the same address does nothing.
func (s *Server) Listen(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	s.opmu.Lock()
	defer s.opmu.Unlock()
	switch {
	case !addr.IsValid() || addr.IsUnspecified():
		return fmt.Errorf("dns: listen: %v is not a unicast address", addr)
	case s.closed:
		return errors.New("dns: listen: server closed")
	case s.listeners[addr] != nil:
		return nil
	}
	var err error
	for try := 0; try < 10; try++ { // port 0: TCP may find the UDP port taken
		var l *listener
		if l, err = s.bind(addr); err == nil {
			s.lmu.Lock()
			s.listeners[addr] = l
			s.lmu.Unlock()
			s.log.Info("dns: listening", "addr", l.addr)
			return nil
		}
		if s.opt.Port != 0 {
			break
		}
	}
	return fmt.Errorf("dns: listen: %w", err)
}

// bind opens and starts both sockets on addr, TCP on the UDP socket's port.
func (s *Server) bind(addr netip.Addr) (*listener, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(s.opt.Port))))
	if err != nil {
		return nil, err
	}
	l := &listener{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	tl, err := net.Listen("tcp", l.addr.String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	h := dns.HandlerFunc(s.serveDNS)
	l.udp = &dns.Server{PacketConn: pc, Handler: h, UDPSize: maxUDPQuery + 1,
		MsgAcceptFunc: acceptMsg, DecorateReader: func(r dns.Reader) dns.Reader { return udpLimit{r} }}
	l.tcp = &dns.Server{Listener: &limitListener{Listener: tl, s: s, slots: make(chan struct{}, MaxTCPConns)},
		Handler: h, MsgAcceptFunc: acceptMsg, ReadTimeout: 2 * time.Second,
		IdleTimeout: func() time.Duration { return TCPIdleTimeout }}
	if err = start(l.udp); err == nil {
		if err = start(l.tcp); err != nil {
			l.udp.Shutdown()
		}
	}
	if err != nil {
		pc.Close()
		tl.Close()
		return nil, err
	}
	return l, nil
}

// start runs srv and returns once it serves, or its error.
func start(srv *dns.Server) error {
	started := make(chan struct{})
	errc := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-errc:
		return err
	}
}

func (l *listener) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l.udp.ShutdownContext(ctx)
	l.tcp.ShutdownContext(ctx)
	l.udp.PacketConn.Close()
	l.tcp.Listener.Close()
}

// Unlisten stops serving on addr.
func (s *Server) Unlisten(addr netip.Addr) {
	addr = addr.Unmap().WithZone("")
	s.opmu.Lock()
	defer s.opmu.Unlock()
	s.lmu.Lock()
	l := s.listeners[addr]
	delete(s.listeners, addr)
	s.lmu.Unlock()
	if l != nil {
		l.stop()
		s.log.Info("dns: stopped listening", "addr", l.addr)
	}
}

// Addrs returns the bound UDP addresses (the TCP ones have the same port).
func (s *Server) Addrs() []netip.AddrPort {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	var out []netip.AddrPort
	for _, l := range s.listeners {
		out = append(out, l.addr)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Close stops serving on every address and cancels forwarded queries; the
// Server cannot listen again.
func (s *Server) Close() error {
	s.opmu.Lock()
	defer s.opmu.Unlock()
	s.lmu.Lock()
	s.closed = true
	ls := s.listeners
	s.listeners = map[netip.Addr]*listener{}
	s.lmu.Unlock()
	s.cancel()
	for _, l := range ls {
		l.stop()
	}
	return nil
}

// acceptMsg is dns.DefaultMsgAcceptFunc answering NOTIMP to opcodes
// other than QUERY (NOTIFY included).
func acceptMsg(h dns.Header) dns.MsgAcceptAction {
	if h.Bits&(1<<15) == 0 && int(h.Bits>>11)&0xF != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	return dns.DefaultMsgAcceptFunc(h)
}

// udpLimit drops UDP queries larger than maxUDPQuery: the server's buffer
// is one byte larger, so a larger datagram reads as exactly that long.
type udpLimit struct{ dns.Reader }

func (r udpLimit) ReadUDP(c *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	m, sess, err := r.Reader.ReadUDP(c, timeout)
	if err == nil && len(m) > maxUDPQuery {
		return m[:0], sess, nil // shorter than a header: the server drops it
	}
	return m, sess, err
}

// limitListener holds at most cap(slots) connections, and closes at once
// those over the limit or from a source that is not the host itself.
type limitListener struct {
	net.Listener
	s     *Server
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := addrOf(c.RemoteAddr())
		if !l.s.isLocal(src) {
			l.s.log.Debug("dns: tcp connection from a foreign source closed", "src", src)
			c.Close()
			continue
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			l.s.log.Debug("dns: too many tcp connections", "src", src)
			c.Close()
		}
	}
}

// slotConn gives its slot back when closed.
type slotConn struct {
	net.Conn
	release func()
}

func (c *slotConn) Close() error { c.release(); return c.Conn.Close() }

// addrOf is the IP of a UDP or TCP address (invalid otherwise).
func addrOf(a net.Addr) netip.Addr {
	if a, ok := a.(interface{ AddrPort() netip.AddrPort }); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// serveDNS answers one query: REFUSED to a foreign source, from the zones
// when the name is in one (or is the reverse name of a record's address),
// else forwarded.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	src := addrOf(w.RemoteAddr())
	if !s.isLocal(src) {
		s.log.Debug("dns: query from a foreign source refused", "src", src)
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	q := req.Question[0] // acceptMsg let only one through
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	if z := s.findZone(name); z != nil {
		answerZone(m, q, name, z)
		s.reply(w, req, m)
		return
	}
	if target := s.findPTR(name); target != "" && q.Qtype == dns.TypePTR {
		m.Authoritative = true
		m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR,
			Class: dns.ClassINET, Ttl: ttl}, Ptr: target + "."})
		s.reply(w, req, m)
		return
	}
	s.forward(w, req)
}

// reply writes an answer of ours, with EDNS when the query had it.
func (s *Server) reply(w dns.ResponseWriter, req, m *dns.Msg) {
	if req.IsEdns0() != nil {
		m.SetEdns0(1232, false)
	}
	w.WriteMsg(m)
}
