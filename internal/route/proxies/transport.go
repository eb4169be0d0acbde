package proxies

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
)

// proxyURL is the URL net/http dials p through (http, https: TLS to the
// proxy, socks5), with its credentials. It is never logged.
func proxyURL(p Proxy) *url.URL {
	u := &url.URL{Scheme: p.Type, Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port))}
	if p.Username != "" || p.Password != "" {
		u.User = url.UserPassword(p.Username, p.Password)
	}
	return u
}

// fingerprint changes whenever what p's client dials changes.
func fingerprint(p Proxy) string {
	h := sha256.Sum256([]byte(proxyURL(p).String()))
	return hex.EncodeToString(h[:])
}

// proxied returns a transport like base (its TLS roots, pool sizes and
// timeouts; http.DefaultTransport's when base is not an *http.Transport)
// that sends through u.
func proxied(base http.RoundTripper, u *url.URL) *http.Transport {
	t, ok := base.(*http.Transport)
	if !ok {
		t = http.DefaultTransport.(*http.Transport)
	}
	t = t.Clone()
	t.Proxy = http.ProxyURL(u)
	t.OnProxyConnectResponse = nil
	return t
}

// clients keeps one upstream client per proxy, built again only when the
// proxy changes, so a reload of the routing state keeps the connection
// pools of unchanged proxies.
type clients struct {
	base   *http.Client // the gateway's upstream client (bounded)
	health *recorder

	mu   sync.Mutex
	byID map[string]cachedClient
}

type cachedClient struct {
	fp string
	c  *http.Client
	tr *http.Transport
}

// get returns the client sending through p.
func (cs *clients) get(p Proxy) *http.Client {
	if p.Unreadable {
		return &http.Client{Transport: unusable{}, CheckRedirect: cs.base.CheckRedirect}
	}
	fp := fingerprint(p)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.byID[p.ID]; ok && c.fp == fp {
		return c.c
	}
	if old, ok := cs.byID[p.ID]; ok && old.tr != nil {
		old.tr.CloseIdleConnections()
	}
	var tr *http.Transport
	c := upstreamhttp.Rebase(cs.base, func(base http.RoundTripper) http.RoundTripper {
		tr = proxied(base, proxyURL(p))
		return &counted{id: p.ID, rt: tr, rec: cs.health}
	})
	cs.byID[p.ID] = cachedClient{fp: fp, c: c, tr: tr}
	return c
}

// retain forgets the clients of proxies not in keep.
func (cs *clients) retain(keep map[string]bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for id, c := range cs.byID {
		if !keep[id] {
			if c.tr != nil {
				c.tr.CloseIdleConnections()
			}
			delete(cs.byID, id)
		}
	}
}

// unusable is the transport of a proxy whose credentials cannot be
// opened: its calls fail rather than going out without the proxy.
type unusable struct{}

func (unusable) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("the outbound proxy's credentials cannot be read (master key changed): set them again")
}

// counted records every call through a proxy in the health sums: an
// answer (a 407 from the proxy excepted) is a success with the time to
// its headers, a transport failure (the caller's cancellation excepted)
// a failure.
type counted struct {
	id  string
	rt  http.RoundTripper
	rec *recorder
}

func (c *counted) RoundTrip(req *http.Request) (*http.Response, error) {
	start := c.rec.now()
	resp, err := c.rt.RoundTrip(req)
	switch {
	case err != nil:
		if req.Context().Err() == nil {
			c.rec.record(c.id, false, 0)
		}
	case resp.StatusCode == http.StatusProxyAuthRequired:
		c.rec.record(c.id, false, 0)
	default:
		c.rec.record(c.id, true, c.rec.now().Sub(start))
	}
	return resp, err
}

// MaxHealthEntries bounds the (proxy, hour) sums kept in memory between
// flushes; past it new ones are dropped (and counted as dropped).
const MaxHealthEntries = 4096

// recorder sums calls per proxy and hour in memory until flushed.
type recorder struct {
	now func() time.Time

	mu      sync.Mutex
	sums    map[hkey]*healthRow
	dropped int64
}

type hkey struct {
	id   string
	hour int64
}

func newRecorder(now func() time.Time) *recorder {
	return &recorder{now: now, sums: map[hkey]*healthRow{}}
}

func (r *recorder) record(id string, ok bool, latency time.Duration) {
	k := hkey{id, r.now().Unix() / 3600}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sums[k]
	if s == nil {
		if len(r.sums) >= MaxHealthEntries {
			r.dropped++
			return
		}
		s = &healthRow{ProxyID: id, Hour: k.hour}
		r.sums[k] = s
	}
	if ok {
		s.OK++
		s.LatencyMS += latency.Milliseconds()
	} else {
		s.Failed++
	}
}

// take returns the sums so far and starts new ones.
func (r *recorder) take() []healthRow {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]healthRow, 0, len(r.sums))
	for _, s := range r.sums {
		out = append(out, *s)
	}
	r.sums = map[hkey]*healthRow{}
	return out
}

// giveBack returns sums a failed flush took, within the cap.
func (r *recorder) giveBack(rows []healthRow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range rows {
		k := hkey{row.ProxyID, row.Hour}
		s := r.sums[k]
		if s == nil {
			if len(r.sums) >= MaxHealthEntries {
				r.dropped++
				continue
			}
			s = &healthRow{ProxyID: row.ProxyID, Hour: row.Hour}
			r.sums[k] = s
		}
		s.OK += row.OK
		s.Failed += row.Failed
		s.LatencyMS += row.LatencyMS
	}
}
