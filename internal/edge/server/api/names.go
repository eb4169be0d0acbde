package api

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
)

// Long polls of a network's names: GET …/dns?wait=N with the ETag of the
// answer the client holds in If-None-Match waits up to N seconds
// (≤ maxWait) for the names to change, then answers them (200) or 304.
// Each held request is a goroutine and a socket, so they are capped per
// user and per replica (429 past either).
const (
	maxWait           = 60 * time.Second
	maxWaitsPerUser   = 64
	maxWaitsPerServer = 20000
)

// waitCounter counts the held long polls per user and in all.
type waitCounter struct {
	mu    sync.Mutex
	users map[string]int
	total int
}

func (c *waitCounter) acquire(user string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[string]int{}
	}
	if c.users[user] >= maxWaitsPerUser || c.total >= maxWaitsPerServer {
		return false
	}
	c.users[user]++
	c.total++
	return true
}

func (c *waitCounter) release(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users[user]--; c.users[user] <= 0 {
		delete(c.users, user)
	}
	c.total--
}

func zoneWire(z control.DNSZone) wire.DNSZone {
	out := wire.DNSZone{NetworkID: z.NetworkID, Zone: z.Zone, Records: make([]wire.DNSRecord, len(z.Records))}
	for i, r := range z.Records {
		out.Records[i] = wire.DNSRecord{DeviceID: r.DeviceID, Name: r.Name, VirtualIP: r.IP4.String(), VirtualIPv6: r.IP6.String()}
	}
	return out
}

// names answers GET /api/v2/virtual-networks/{vn}/dns: the network's
// zone and every member's name, with an ETag; ?wait=N holds the request
// while If-None-Match names the current answer (see maxWait).
func (s *Server) names(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	vn := r.PathValue("vn")
	return s.longPoll(w, r, p, vn, func() (any, error) {
		z, err := s.svc.Names(r.Context(), p, vn)
		if err != nil {
			return nil, toHTTP(err)
		}
		return zoneWire(z), nil
	})
}

// netMap answers GET /api/v2/virtual-networks/{vn}/map: every member's
// name, addresses, key and subnet routes — what a member's daemon follows
// (a long poll, like …/dns).
func (s *Server) netMap(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	vn := r.PathValue("vn")
	return s.longPoll(w, r, p, vn, func() (any, error) {
		m, err := s.svc.NetworkMap(r.Context(), p, vn)
		if err != nil {
			return nil, toHTTP(err)
		}
		out := wire.NetMap{NetworkID: m.NetworkID, Zone: m.Zone, Peers: make([]wire.MapPeer, len(m.Peers)), PolicyVersion: m.Policy.Version}
		if m.Policy.Document != "" {
			out.Policy = json.RawMessage(m.Policy.Document)
		}
		for i, pe := range m.Peers {
			out.Peers[i] = wire.MapPeer{DeviceID: pe.DeviceID, Name: pe.Name, VirtualIP: pe.IP4.String(),
				VirtualIPv6: pe.IP6.String(), PublicKey: pe.PublicKey, Routes: prefixStrings(pe.Routes), Tags: pe.Tags,
				KeyExpired: pe.KeyExpired}
		}
		return out, nil
	})
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// longPoll answers read's value as a listed (ETag) answer; with ?wait=N
// and an If-None-Match naming the current answer it first waits up to N
// seconds (≤ maxWait) for the network to change.
func (s *Server) longPoll(w http.ResponseWriter, r *http.Request, p control.Principal, vn string, read func() (any, error)) error {
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > maxWait {
			return httpx.Errorf(http.StatusBadRequest, "invalid_request", "wait must be a whole number of seconds from 0 to %d", int(maxWait/time.Second))
		}
		wait = time.Duration(n) * time.Second
	}
	tagOf := func() (string, any, error) {
		v, err := read()
		if err != nil {
			return "", nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "", nil, err
		}
		return etag(p.UserID, append(b, '\n')), v, nil
	}
	held := r.Header.Values("If-None-Match")
	if wait > 0 && len(held) > 0 {
		if !s.waits.acquire(p.UserID) {
			w.Header().Set("Retry-After", "5")
			return httpx.Errorf(http.StatusTooManyRequests, "too_many_waits", "too many waiting requests (at most %d per user); retry later", maxWaitsPerUser)
		}
		defer s.waits.release(p.UserID)
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			changed := s.svc.Watch(vn)
			tag, _, err := tagOf()
			if err != nil {
				return err
			}
			if !noneMatch(held, tag) {
				break
			}
			select {
			case <-changed:
				continue
			case <-timer.C:
			case <-r.Context().Done():
				return nil
			}
			break
		}
	}
	_, v, err := tagOf()
	if err != nil {
		return err
	}
	return listed(w, r, p, v)
}

// ---- subnet routes ----

func routesWire(rs control.RouteState) wire.Routes {
	return wire.Routes{Advertised: prefixStrings(rs.Advertised), Approved: prefixStrings(rs.Approved),
		Enabled: prefixStrings(rs.Enabled), Primary: prefixStrings(rs.Primary)}
}

func (s *Server) memberRoutes(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	rs, err := s.svc.MemberRoutes(r.Context(), p, r.PathValue("vn"), r.PathValue("dev"))
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, routesWire(rs))
}

func (s *Server) approveRoutes(w http.ResponseWriter, r *http.Request, p control.Principal) error {
	var req wire.ApproveRoutesRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Approved == nil {
		return httpx.Errorf(http.StatusBadRequest, "invalid_request", `approved is required: the list of routes to approve ([] approves none)`)
	}
	rs, err := s.svc.ApproveRoutes(r.Context(), p, r.PathValue("vn"), r.PathValue("dev"), req.Approved)
	if err != nil {
		return toHTTP(err)
	}
	return ok(w, http.StatusOK, routesWire(rs))
}
