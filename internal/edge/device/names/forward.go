package names

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

var errMismatch = errors.New("answer does not match the question")

// forward sends req to the upstreams in turn and writes the first answer
// that is not SERVFAIL or REFUSED back with the client's id (truncated to
// what the client takes over UDP); SERVFAIL when there is none, no
// upstream, or MaxInflight queries are already in flight.
func (s *Server) forward(w dns.ResponseWriter, req *dns.Msg) {
	resp := s.ask(req)
	if resp == nil {
		resp = new(dns.Msg)
		resp.SetRcode(req, dns.RcodeServerFailure)
		resp.RecursionAvailable = true
	}
	resp.Id = req.Id
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil && int(o.UDPSize()) > size {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// ask returns the first good answer of the upstreams, nil for none.
func (s *Server) ask(req *dns.Msg) *dns.Msg {
	ups := s.forwardTargets()
	if len(ups) == 0 {
		return nil
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		s.log.Debug("dns: too many forwarded queries in flight", "max", cap(s.sem))
		return nil
	}
	for _, up := range ups {
		resp, err := s.exchange(req, up)
		switch {
		case err != nil:
			s.log.Debug("dns: upstream failed", "upstream", up, "err", err)
		case resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused:
			s.log.Debug("dns: upstream answered", "upstream", up, "rcode", dns.RcodeToString[resp.Rcode])
		default:
			return resp
		}
	}
	return nil
}

// forwardTargets is the upstreams but those the server itself listens on.
func (s *Server) forwardTargets() []netip.AddrPort {
	s.mu.RLock()
	ups := s.upstreams
	s.mu.RUnlock()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	var out []netip.AddrPort
	for _, u := range ups {
		if l := s.listeners[u.Addr().Unmap().WithZone("")]; l == nil || l.addr.Port() != u.Port() {
			out = append(out, u)
		}
	}
	return out
}

// exchange asks one upstream, under a fresh id.
func (s *Server) exchange(req *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	q := req.Copy()
	q.Id = dns.Id()
	resp, err := s.exchangeNet(q, up, "udp")
	if err == nil && resp.Truncated {
		resp, err = s.exchangeNet(q, up, "tcp")
	}
	if err != nil {
		return nil, err
	}
	if resp.Id != q.Id || len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, q.Question[0].Name) ||
		resp.Question[0].Qtype != q.Question[0].Qtype || resp.Question[0].Qclass != q.Question[0].Qclass {
		return nil, errMismatch
	}
	return resp, nil
}

// exchangeNet is one exchange over network ("udp" or "tcp") within
// Options.Timeout, cut short when the server closes.
func (s *Server) exchangeNet(q *dns.Msg, up netip.AddrPort, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opt.Timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: s.opt.Timeout}
	co, err := c.DialContext(ctx, up.String())
	if err != nil {
		return nil, err
	}
	defer co.Close()
	defer context.AfterFunc(ctx, func() { co.Close() })()
	r, _, err := c.ExchangeWithConnContext(ctx, q, co)
	return r, err
}
