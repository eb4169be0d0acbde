package api

import (
	"encoding/json"
	"net/http"
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
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || time.Duration(n)*time.Second > maxWait {
			return httpx.Errorf(http.StatusBadRequest, "invalid_request", "wait must be a whole number of seconds from 0 to %d", int(maxWait/time.Second))
		}
		wait = time.Duration(n) * time.Second
	}
	vn := r.PathValue("vn")
	read := func() (string, control.DNSZone, error) {
		z, err := s.svc.Names(r.Context(), p, vn)
		if err != nil {
			return "", z, toHTTP(err)
		}
		b, err := json.Marshal(zoneWire(z))
		if err != nil {
			return "", z, err
		}
		return etag(p.UserID, append(b, '\n')), z, nil
	}
	held := r.Header.Values("If-None-Match")
	if wait > 0 && len(held) > 0 {
		if !s.waits.acquire(p.UserID) {
			w.Header().Set("Retry-After", "5")
			return httpx.Errorf(http.StatusTooManyRequests, "too_many_waits", "too many waiting requests for names (at most %d per user); retry later", maxWaitsPerUser)
		}
		defer s.waits.release(p.UserID)
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			changed := s.svc.Watch(vn)
			tag, _, err := read()
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
	_, z, err := read()
	if err != nil {
		return err
	}
	return listed(w, r, p, zoneWire(z))
}
