package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of the diagnostics the control socket answers (`omni edge ping`
// and `omni edge netcheck`).
const (
	// DefaultPingTimeout and MaxPingTimeout bound the wait for one echo
	// reply.
	DefaultPingTimeout = 2 * time.Second
	MaxPingTimeout     = 30 * time.Second
	// MaxPingCount caps `omni edge ping --count`.
	MaxPingCount = 100
	// maxPings is how many echo requests may be in flight at once.
	maxPings = 4
	// netcheckProbes is how many probes each nucleus gets, within
	// netcheckTimeout for all of them.
	netcheckProbes  = 3
	netcheckTimeout = 5 * time.Second
)

// PingRequest asks the daemon for one echo to a peer (POST /v1/ping).
type PingRequest struct {
	// Target is a member's DNS name, full ("robot.home.omni.internal")
	// or short ("robot", "robot.home"), or a virtual IPv4 or IPv6.
	Target    string `json:"target"`
	Seq       int    `json:"seq"`
	TimeoutMS int    `json:"timeout_ms,omitempty"` // default DefaultPingTimeout
}

// PingReply is the outcome of one echo: the peer it reached and the path
// the data plane used for it when the reply came (or the wait ended).
type PingReply struct {
	Network   string `json:"network"`
	NetworkID string `json:"network_id"`
	Name      string `json:"name,omitempty"`     // the member's short name
	DNSName   string `json:"dns_name,omitempty"` // its full name
	PublicKey string `json:"public_key"`
	VirtualIP string `json:"virtual_ip"` // the address pinged
	Seq       int    `json:"seq"`
	Replied   bool   `json:"replied"`
	// LatencyMS is the round trip in milliseconds (when Replied).
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Path      Path    `json:"path"`
	Endpoint  string  `json:"endpoint,omitempty"` // the peer's, or the relay's
	Nucleus   string  `json:"nucleus,omitempty"`  // the relaying nucleus (path relayed)
	Error     string  `json:"error,omitempty"`    // why there was no reply
}

// NetcheckReport is the answer of POST /v1/netcheck: what each network's
// nucleus and the way to it look like from this device.
type NetcheckReport struct {
	Networks []NetcheckNetwork `json:"networks"`
}

// NetcheckNetwork is one network's nucleus seen from this device.
type NetcheckNetwork struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Interface   string `json:"interface"`
	Nucleus     string `json:"nucleus"`                // as the join answer names it
	NucleusAddr string `json:"nucleus_addr,omitempty"` // the address in use
	Registered  bool   `json:"registered"`
	// UDP: the nucleus answered a probe over UDP.
	UDP    bool      `json:"udp"`
	Probes int       `json:"probes"`
	RTTMS  []float64 `json:"rtt_ms,omitempty"` // each answered probe's round trip
	// LatencyMS is the best round trip of the probes.
	LatencyMS float64 `json:"latency_ms,omitempty"`
	// KeepaliveRTTMS is the round trip of the session's last keepalive.
	KeepaliveRTTMS float64 `json:"keepalive_rtt_ms,omitempty"`
	// Observed is this device's endpoint as the nucleus sees it; LocalPort
	// the port it sends from, LocalEndpoints those announced for peers on
	// the same LAN.
	Observed       string   `json:"observed_endpoint,omitempty"`
	LocalPort      int      `json:"local_port,omitempty"`
	LocalEndpoints []string `json:"local_endpoints,omitempty"`
	// NAT is none, port-preserving, port-rewriting or unknown; NATNote
	// says what it means.
	NAT     string `json:"nat"`
	NATNote string `json:"nat_note,omitempty"`
	Error   string `json:"error,omitempty"`
}

// NAT verdicts of NetcheckNetwork.
const (
	NATNone           = "none"
	NATPortPreserving = "port-preserving"
	NATPortRewriting  = "port-rewriting"
	NATUnknown        = "unknown"
)

// diagError is a control-socket answer other than 200, with the message
// the user sees.
type diagError struct {
	status int
	msg    string
}

func (e *diagError) Error() string { return e.msg }

func diagErrorf(status int, format string, args ...any) error {
	return &diagError{status: status, msg: fmt.Sprintf(format, args...)}
}

// withTimeout is context.WithTimeout on the daemon's clock.
func (d *daemon) withTimeout(ctx context.Context, dur time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-d.clock.After(dur):
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// pingTarget is a resolved ping target: a current peer of one network.
type pingTarget struct {
	n    *network
	addr netip.Addr // the address to ping
	rec  NameRecord // zero: the member's name is not known
	peer PeerStatus
}

func (d *daemon) networks() []*network {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.nets)
}

// resolve finds the peer a ping names: a virtual IPv4 or IPv6 of a peer,
// or a member's full or short name (any leading labels of it: "robot",
// "robot.home"); a short name two networks hold is ambiguous.
func (d *daemon) resolve(q string) (pingTarget, error) {
	q = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(q), "."))
	if q == "" {
		return pingTarget{}, diagErrorf(http.StatusBadRequest, "no target: give a peer's name or virtual IP")
	}
	nets := d.networks()
	if a, err := netip.ParseAddr(q); err == nil {
		a = a.Unmap()
		for _, n := range nets {
			if a == n.cfg.VirtualIP.Addr() || (n.cfg.VirtualIPv6.IsValid() && a == n.cfg.VirtualIPv6.Addr()) {
				return pingTarget{}, diagErrorf(http.StatusBadRequest, "%s is this device's own address", a)
			}
			rec, _ := n.nameOf(a)
			if t, ok := peerAt(n, a, rec); ok {
				return t, nil
			}
			if rec.Name != "" {
				return pingTarget{}, notConnected(rec.Name, a)
			}
		}
		return pingTarget{}, diagErrorf(http.StatusNotFound, "no peer has the address %s in the networks this device is in", a)
	}
	type cand struct {
		n   *network
		rec NameRecord
	}
	var exact, prefix []cand
	named := false
	for _, n := range nets {
		n.mu.Lock()
		recs := n.records
		n.mu.Unlock()
		named = named || recs != nil
		for _, r := range recs {
			name := strings.ToLower(r.Name)
			switch {
			case name == q:
				exact = append(exact, cand{n, r})
			case strings.HasPrefix(name, q+"."):
				prefix = append(prefix, cand{n, r})
			}
		}
	}
	found := exact
	if len(found) == 0 {
		found = prefix
	}
	switch {
	case len(found) == 0 && !named:
		return pingTarget{}, diagErrorf(http.StatusNotFound, "unknown peer %q: no member names are known (the daemon follows them with --dns, the default); give a virtual IP", q)
	case len(found) == 0:
		return pingTarget{}, diagErrorf(http.StatusNotFound, "unknown peer %q: no member of this device's networks has that name", q)
	case len(found) > 1:
		var all []string
		for _, c := range found {
			all = append(all, c.rec.Name)
		}
		return pingTarget{}, diagErrorf(http.StatusConflict, "%q is ambiguous: %s; give the full name", q, strings.Join(all, ", "))
	}
	c := found[0]
	a := c.rec.IPv4
	if !a.IsValid() {
		a = c.rec.IPv6
	}
	if a == c.n.cfg.VirtualIP.Addr() {
		return pingTarget{}, diagErrorf(http.StatusBadRequest, "%s is this device", c.rec.Name)
	}
	if t, ok := peerAt(c.n, a, c.rec); ok {
		return t, nil
	}
	return pingTarget{}, notConnected(c.rec.Name, a)
}

func notConnected(name string, a netip.Addr) error {
	return diagErrorf(http.StatusNotFound, "%s (%s) is not connected: the nucleus does not list it as a peer (offline?)", name, a)
}

// peerAt finds the peer at a in the network's tunnel.
func peerAt(n *network, a netip.Addr, rec NameRecord) (pingTarget, bool) {
	for _, p := range n.tun.Status().Peers {
		if p.VirtualIP == a || (p.VirtualIPv6.IsValid() && p.VirtualIPv6 == a) {
			if rec.Name == "" {
				rec, _ = n.nameOf(p.VirtualIP)
			}
			return pingTarget{n: n, addr: a, rec: rec, peer: p}, true
		}
	}
	return pingTarget{}, false
}

// ping sends one echo request to the peer req names through its tunnel
// and reports the reply and the path in use.
func (d *daemon) ping(ctx context.Context, req PingRequest) (PingReply, error) {
	if d.deps.Pinger == nil {
		return PingReply{}, diagErrorf(http.StatusNotImplemented, "this daemon cannot ping: no pinger is built in")
	}
	select {
	case d.pings <- struct{}{}:
		defer func() { <-d.pings }()
	default:
		return PingReply{}, diagErrorf(http.StatusTooManyRequests, "too many pings in flight (at most %d); try again", maxPings)
	}
	t, err := d.resolve(req.Target)
	if err != nil {
		return PingReply{}, err
	}
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultPingTimeout
	}
	timeout = min(timeout, MaxPingTimeout)
	src := t.n.cfg.VirtualIP.Addr()
	if t.addr.Is6() {
		if !t.n.cfg.VirtualIPv6.IsValid() {
			return PingReply{}, diagErrorf(http.StatusBadRequest, "this device has no IPv6 address in network %s", t.n.cfg.Name)
		}
		src = t.n.cfg.VirtualIPv6.Addr()
	}
	rep := PingReply{Network: t.n.cfg.Name, NetworkID: t.n.cfg.NetworkID, DNSName: t.rec.Name,
		PublicKey: t.peer.PublicKey.String(), VirtualIP: t.addr.String(), Seq: req.Seq}
	if t.rec.Name != "" {
		t.n.mu.Lock()
		rep.Name = shortName(t.rec.Name, t.n.recZone)
		t.n.mu.Unlock()
	}
	ectx, cancel := d.withTimeout(ctx, timeout)
	rtt, err := d.deps.Pinger.Echo(ectx, src, t.addr, req.Seq)
	cancel()
	switch {
	case err == nil:
		rep.Replied, rep.LatencyMS = true, float64(rtt.Microseconds())/1000
	case ctx.Err() != nil:
		return PingReply{}, ctx.Err()
	case ectx.Err() != nil:
		rep.Error = fmt.Sprintf("no reply within %v", timeout)
	default:
		rep.Error = err.Error()
	}
	rep.Path = PathNone
	for _, p := range t.n.tun.Status().Peers {
		if p.PublicKey == t.peer.PublicKey {
			rep.Path, rep.Endpoint = p.Path, addrString(p.Endpoint, p.Endpoint.IsValid())
		}
	}
	if rep.Path == "" {
		rep.Path = PathNone
	}
	if rep.Path == PathRelayed {
		rep.Nucleus = t.n.cfg.Nucleus
	}
	return rep, nil
}

// netcheck probes every network's nucleus at once (one netcheck at a
// time).
func (d *daemon) netcheck(ctx context.Context) (NetcheckReport, error) {
	select {
	case d.netchecks <- struct{}{}:
		defer func() { <-d.netchecks }()
	default:
		return NetcheckReport{}, diagErrorf(http.StatusTooManyRequests, "a netcheck is already running; try again")
	}
	nets := d.networks()
	rep := NetcheckReport{Networks: make([]NetcheckNetwork, len(nets))}
	var wg sync.WaitGroup
	for i, n := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Networks[i] = d.checkNetwork(ctx, n)
		}()
	}
	wg.Wait()
	return rep, ctx.Err()
}

func (d *daemon) checkNetwork(ctx context.Context, n *network) NetcheckNetwork {
	n.mu.Lock()
	out := NetcheckNetwork{ID: n.cfg.NetworkID, Name: n.cfg.Name, Interface: n.cfg.Interface, Nucleus: n.cfg.Nucleus,
		Registered: n.registered, NAT: NATUnknown}
	n.mu.Unlock()
	pr, ok := n.sess.(NucleusProber)
	if !ok {
		out.Error = "this data plane cannot probe its nucleus"
		return out
	}
	pctx, cancel := d.withTimeout(ctx, netcheckTimeout)
	p, err := pr.ProbeNucleus(pctx, netcheckProbes)
	cancel()
	out.NucleusAddr = addrString(p.Server, p.Server.IsValid())
	out.Registered = out.Registered || p.Registered
	out.Probes, out.UDP = p.Sent, len(p.RTTs) > 0
	for i, r := range p.RTTs {
		ms := float64(r.Microseconds()) / 1000
		out.RTTMS = append(out.RTTMS, ms)
		if i == 0 || ms < out.LatencyMS {
			out.LatencyMS = ms
		}
	}
	out.KeepaliveRTTMS = float64(p.LastRTT.Microseconds()) / 1000
	out.Observed = addrString(p.Observed, p.Observed.IsValid())
	out.LocalPort = int(p.LocalPort)
	for _, e := range p.Local {
		out.LocalEndpoints = append(out.LocalEndpoints, e.String())
	}
	out.NAT, out.NATNote = classifyNAT(p)
	switch {
	case err != nil:
		out.Error = err.Error()
	case p.Sent > 0 && len(p.RTTs) == 0:
		out.Error = fmt.Sprintf("none of %d probes was answered: UDP to the nucleus %s is blocked or it is down", p.Sent, out.NucleusAddr)
	}
	return out
}

// classifyNAT compares the endpoint the nucleus observed with the
// device's own. One nucleus sees one mapping only: whether a NAT keeps it
// for other destinations (endpoint-independent) or makes a new one per
// destination (symmetric) cannot be told from it.
func classifyNAT(p NucleusProbe) (string, string) {
	obs := p.Observed
	if !obs.IsValid() || p.LocalPort == 0 {
		return NATUnknown, "the nucleus has not reported the address it sees this device at"
	}
	own := slices.Contains(p.HostAddrs, obs.Addr().Unmap())
	switch {
	case own && obs.Port() == p.LocalPort:
		return NATNone, fmt.Sprintf("the nucleus sees this device at its own address and port %s: no NAT on the way", obs)
	case obs.Port() == p.LocalPort:
		return NATPortPreserving, fmt.Sprintf("a NAT maps the port %d to %s and keeps the port: peers usually reach this device "+
			"directly; one nucleus cannot tell whether the NAT keeps the mapping for other destinations (a symmetric NAT "+
			"that keeps ports looks the same)", p.LocalPort, obs)
	default:
		return NATPortRewriting, fmt.Sprintf("a NAT maps the port %d to %s and rewrites the port: if it picks a new port for "+
			"every destination (a symmetric NAT) direct paths fail and peers are relayed; one nucleus cannot tell",
			p.LocalPort, obs)
	}
}
