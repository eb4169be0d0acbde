package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// fakeClock fires After channels only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
}

type waiter struct {
	at time.Time
	d  time.Duration
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &waiter{at: c.now.Add(d), d: d, ch: make(chan time.Time, 1)}
	c.waiters = append(c.waiters, w)
	return w.ch
}

// Advance moves time and fires the waiters that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			continue
		}
		keep = append(keep, w)
	}
	c.waiters = keep
}

// wait blocks (at most testenv.DefaultWait) until n waits are pending and
// returns their durations.
func (c *fakeClock) wait(t *testing.T, n int) []time.Duration {
	t.Helper()
	var ds []time.Duration
	testenv.Eventually(t, fmt.Sprintf("the daemon to wait on the clock %d times", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.waiters) < n {
			return false
		}
		ds = make([]time.Duration, len(c.waiters))
		for i, w := range c.waiters {
			ds[i] = w.d
		}
		return true
	})
	return ds
}

// fakeTunnel records what the daemon asked of it.
type fakeTunnel struct {
	cfg NetworkConfig

	mu      sync.Mutex
	peers   []Peer
	exits   []netip.Addr
	secrets []string // SetSecret calls
	status  TunnelStatus
	closed  bool
	served  []netip.Prefix // ServeRoutes
	filter  *policy.Filter // SetFilter
}

func (f *fakeTunnel) SetPeers(p []Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = append([]Peer(nil), p...)
	return nil
}

func (f *fakeTunnel) SetSecret(secret string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets = append(f.secrets, secret)
	return nil
}

func (f *fakeTunnel) SetExit(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exits = append(f.exits, a)
	return nil
}

func (f *fakeTunnel) ServeRoutes(routes []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served = append([]netip.Prefix(nil), routes...)
	return nil
}

func (f *fakeTunnel) SetFilter(p *policy.Filter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filter = p
	return nil
}

func (f *fakeTunnel) Status() TunnelStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.status
	s.Interface = f.cfg.Interface
	return s
}

func (f *fakeTunnel) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeTunnel) exit() (netip.Addr, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.exits) == 0 {
		return netip.Addr{}, 0
	}
	return f.exits[len(f.exits)-1], len(f.exits)
}

// fakeSession is a nucleus session that registers at once and blocks.
type fakeSession struct {
	cfg      NetworkConfig
	onPeers  func([]Peer)
	onRekey  func()
	peerName func(netip.Addr) string

	probe    NucleusProbe // what ProbeNucleus reports
	probeErr error

	mu                sync.Mutex
	registers, leaves int
	running           bool
	secrets           []string // SetSecret calls
}

func (s *fakeSession) SetSecret(secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, secret)
	return nil
}

func (s *fakeSession) Register(context.Context) error {
	s.mu.Lock()
	s.registers++
	s.mu.Unlock()
	return nil
}

func (s *fakeSession) Run(ctx context.Context) error {
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return nil
}

func (s *fakeSession) ProbeNucleus(_ context.Context, count int) (NucleusProbe, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.probe
	p.Sent = count
	return p, s.probeErr
}

func (s *fakeSession) Leave(context.Context) error {
	s.mu.Lock()
	s.leaves++
	s.mu.Unlock()
	return nil
}

// fakeDataPlane hands out fake tunnels and sessions.
type fakeDataPlane struct {
	mu       sync.Mutex
	tunnels  []*fakeTunnel
	sessions []*fakeSession
}

func (p *fakeDataPlane) deps(clk Clock) Deps {
	return Deps{
		Tunnels: func(_ context.Context, cfg NetworkConfig) (Tunnel, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			t := &fakeTunnel{cfg: cfg}
			p.tunnels = append(p.tunnels, t)
			return t, nil
		},
		Nucleus: func(cfg NetworkConfig, _ Tunnel, h SessionHooks) (Session, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			s := &fakeSession{cfg: cfg, onPeers: h.OnPeers, onRekey: h.OnRekey, peerName: h.PeerName}
			p.sessions = append(p.sessions, s)
			return s, nil
		},
		Clock: clk,
		Rand:  func() float64 { return 0.5 },
	}
}

// waitTunnels waits (at most testenv.DefaultWait) for n tunnels.
func (p *fakeDataPlane) waitTunnels(t *testing.T, n int) ([]*fakeTunnel, []*fakeSession) {
	t.Helper()
	var ts []*fakeTunnel
	var ss []*fakeSession
	testenv.Eventually(t, fmt.Sprintf("%d tunnels to be created", n), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.tunnels) < n || len(p.sessions) < n {
			return false
		}
		ts, ss = append([]*fakeTunnel(nil), p.tunnels...), append([]*fakeSession(nil), p.sessions...)
		return true
	})
	return ts, ss
}

// proxy sits in front of the control plane, counts requests by path and
// can answer 429 to the first requests of a path.
type proxy struct {
	*httptest.Server
	mu       sync.Mutex
	seen     map[string]int // requests arrived
	limit    map[string]int // remaining 429 answers
	rejected map[string]int
}

func newProxy(t *testing.T, target string) *proxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &proxy{seen: map[string]int{}, limit: map[string]int{}, rejected: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen[r.URL.Path]++
		reject := p.limit[r.URL.Path] > 0
		if reject {
			p.limit[r.URL.Path]--
			p.rejected[r.URL.Path]++
		}
		p.mu.Unlock()
		if reject {
			w.Header().Set("Retry-After", "7")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error":{"code":"rate_limited","message":"slow down"}}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[path]
}

func (p *proxy) rejectNext(path string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit[path] = n
}
