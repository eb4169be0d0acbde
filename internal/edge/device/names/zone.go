package names

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Record is one device's name and addresses (an invalid Addr: none of that
// family).
type Record struct {
	Name string // fully-qualified, lower case, no trailing dot: "robot.home.omni.internal"
	IPv4 netip.Addr
	IPv6 netip.Addr
}

const (
	// MaxZoneRecords is how many records a zone holds at most; SetZone
	// ignores (and logs) the rest.
	MaxZoneRecords = 65536
	// maxNameLen is the longest name (without the trailing dot) kept.
	maxNameLen = 253
	// ttl is the TTL of every answer and the SOA minimum: names change live.
	ttl = 5
)

// zone is one zone's records, never changed once built (SetZone replaces it).
type zone struct {
	name   string            // "home.omni.internal"
	recs   map[string]Record // by name
	ptr    map[string]string // reverse name ("7.0.64.100.in-addr.arpa") → name
	serial uint32
}

// normName lower-cases a name and drops its trailing dot; ok is whether it
// is then a valid name: at most 253 bytes of labels of 1 to 63 letters,
// digits, '-' or '_', not starting with '-'.
func normName(name string) (string, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" || len(name) > maxNameLen {
		return name, false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return name, false
		}
	}
	return name, true
}

// SetZone replaces the records of zone ("home.omni.internal") atomically;
// the zone is created when new. Names are matched case-insensitively. A
// record whose name is invalid (see the package documentation) or not under the zone
// is ignored, as is every record past MaxZoneRecords and the second of two
// with the same name. An invalid zone name is ignored.
func (s *Server) SetZone(zoneName string, recs []Record) {
	name, ok := normName(zoneName)
	if !ok {
		s.log.Warn("dns: invalid zone name ignored", "zone", zoneName)
		return
	}
	z := &zone{name: name, recs: map[string]Record{}, ptr: map[string]string{}}
	ignored := 0
	for _, r := range recs {
		n, ok := normName(r.Name)
		if _, dup := z.recs[n]; dup || !ok || !strings.HasSuffix(n, "."+name) || len(z.recs) >= MaxZoneRecords {
			ignored++
			continue
		}
		if r.Name, r.IPv4 = n, r.IPv4.Unmap(); !r.IPv4.Is4() {
			r.IPv4 = netip.Addr{}
		}
		if !r.IPv6.Is6() || r.IPv6.Is4In6() {
			r.IPv6 = netip.Addr{}
		}
		z.recs[n] = r
		for _, a := range []netip.Addr{r.IPv4, r.IPv6} {
			if rev, err := dns.ReverseAddr(a.String()); a.IsValid() && err == nil {
				z.ptr[strings.TrimSuffix(rev, ".")] = n
			}
		}
	}
	if ignored > 0 {
		s.log.Warn("dns: records ignored", "zone", name, "ignored", ignored, "kept", len(z.recs))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serial++
	z.serial = s.serial
	s.zones[name] = z
}

// RemoveZone stops answering for zone; its names are forwarded again.
func (s *Server) RemoveZone(zoneName string) {
	name, _ := normName(zoneName)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zones, name)
}

// findZone returns the longest zone name is in or under, or nil.
func (s *Server) findZone(name string) *zone {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for p := name; ; {
		if z := s.zones[p]; z != nil {
			return z
		}
		i := strings.IndexByte(p, '.')
		if i < 0 {
			return nil
		}
		p = p[i+1:]
	}
}

// findPTR returns the name of the record whose address has the reverse
// name rev, "" for none.
func (s *Server) findPTR(rev string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, z := range s.zones {
		if n, ok := z.ptr[rev]; ok {
			return n
		}
	}
	return ""
}

func (z *zone) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.name + ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      z.name + ".",
		Mbox:    "hostmaster." + z.name + ".",
		Serial:  z.serial,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl,
	}
}

// answerZone fills m, a reply to question q for name (normalized) in z:
// the addresses, else NODATA or NXDOMAIN with the zone's SOA.
func answerZone(m *dns.Msg, q dns.Question, name string, z *zone) {
	m.Authoritative = true
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	rec, found := z.recs[name]
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
		return
	case name == z.name && q.Qtype == dns.TypeSOA:
		m.Answer = append(m.Answer, z.soa())
	case found:
		if rec.IPv4.IsValid() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY) {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: rec.IPv4.AsSlice()})
		}
		if rec.IPv6.IsValid() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY) {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: rec.IPv6.AsSlice()})
		}
	case name != z.name:
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, z.soa())
	}
}
