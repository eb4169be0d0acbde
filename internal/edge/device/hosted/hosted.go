// Package hosted owns the user-hosted nucleus (Nucleus Mode, and the
// nucleus half of Dual Mode): it logs in to a control plane with a security
// key, keeps the user's entry in /api/v2/user-servers current with its
// public endpoint and the public half of the static key it keeps in its
// state directory, and serves the networks that point to that entry, with
// the secrets, members and member keys it polls from the control plane.
package hosted

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/clock"
)

// API is the part of the control-plane client the hosted nucleus uses.
type API interface {
	LoginSecurityKey(ctx context.Context, key string) (wire.TokenResponse, error)
	UserServers(ctx context.Context) ([]wire.UserServer, error)
	CreateUserServer(ctx context.Context, req wire.UserServerRequest) (wire.UserServer, error)
	UpdateUserServer(ctx context.Context, id string, req wire.UserServerRequest) (wire.UserServer, error)
	ServedNetworks(ctx context.Context, id string) ([]wire.ServedNetwork, error)
}

var _ API = (*client.Client)(nil)

// Config configures a hosted nucleus.
type Config struct {
	SecurityKey string // required
	// Public is the HOST:PORT devices reach this nucleus at; it is what the
	// user-server entry advertises. Required.
	Public string
	// Name is the entry's name (default "nucleus"); an existing entry of
	// that name is taken over, unless ServerID names one.
	Name string
	// Country is the entry's ISO 3166-1 alpha-2 country (default "US").
	Country string
	// ServerID selects an existing entry by id instead of by name.
	ServerID string
	// Poll is how often networks, secrets and members are refreshed
	// (default 10 s); a device that left is evicted at the next poll, and
	// the members are told about the network's new secret.
	Poll time.Duration
	// Announce is how often the entry is checked and corrected (default
	// 5 min).
	Announce time.Duration
	// StateDir holds the nucleus's static X25519 key (KeyFile), made on
	// first use (required). Devices key their signaling with its public
	// half, which the entry publishes: a new key (a lost directory) makes
	// every device fetch it again with a join.
	StateDir string
}

// Deps are injected.
type Deps struct {
	API   API
	Clock clock.Clock  // nil: the system clock (timestamps; poll timers are real)
	Log   *slog.Logger // nil: discard
}

// Nucleus is a running hosted nucleus.
type Nucleus struct {
	cfg Config
	api API
	clk clock.Clock
	log *slog.Logger
	src *source
	srv *nucleus.Server
	pub wgkey.Key

	mu       sync.Mutex
	serverID string
}

// New validates cfg and builds the nucleus; Run starts it.
func New(cfg Config, deps Deps) (*Nucleus, error) {
	if cfg.SecurityKey == "" {
		return nil, errors.New("hosted nucleus: a security key is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Public); err != nil || cfg.Public == "" {
		return nil, fmt.Errorf("hosted nucleus: public endpoint %q must be HOST:PORT", cfg.Public)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("hosted nucleus: a state directory (for its static key) is required")
	}
	if cfg.Name == "" {
		cfg.Name = "nucleus"
	}
	if cfg.Country == "" {
		cfg.Country = "US"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	if cfg.Announce <= 0 {
		cfg.Announce = 5 * time.Minute
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	priv, err := LoadKey(cfg.StateDir, deps.Log)
	if err != nil {
		return nil, err
	}
	n := &Nucleus{cfg: cfg, api: deps.API, clk: deps.Clock, log: deps.Log, pub: nucleus.PublicKeyOf(priv)}
	n.src = &source{clk: deps.Clock, log: deps.Log, fetch: n.fetch, nets: map[string]servedNet{}}
	srv, err := nucleus.NewServer(nucleus.Options{Directory: n.src, PrivateKey: priv, Clock: deps.Clock, Log: deps.Log, DirectoryTTL: 3 * cfg.Poll})
	if err != nil {
		return nil, err
	}
	n.srv = srv
	n.src.onChanged = srv.Invalidate
	return n, nil
}

// Server is the nucleus server, for its statistics.
func (n *Nucleus) Server() *nucleus.Server { return n.srv }

// PublicKey is the nucleus's static public key, which its entry publishes.
func (n *Nucleus) PublicKey() wgkey.Key { return n.pub }

// ServerID is the user-server entry this nucleus serves, once announced.
func (n *Nucleus) ServerID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.serverID
}

// Run logs in, announces the entry, loads the served networks and serves
// pc until ctx ends. Start-up calls are retried with back-off while the
// control plane is unreachable or busy; an answer such as a wrong key ends
// Run with an error.
func (n *Nucleus) Run(ctx context.Context, pc net.PacketConn) error {
	if err := n.retry(ctx, "login", func(ctx context.Context) error {
		_, err := n.api.LoginSecurityKey(ctx, n.cfg.SecurityKey)
		return err
	}); err != nil {
		return err
	}
	if err := n.retry(ctx, "announce", n.announce); err != nil {
		return err
	}
	if err := n.retry(ctx, "networks", n.src.refresh); err != nil {
		return err
	}
	n.log.Info("hosted nucleus serving", "server_id", n.ServerID(), "public", n.cfg.Public,
		"listen", pc.LocalAddr().String(), "networks", n.src.count())

	errc := make(chan error, 1)
	go func() { errc <- n.srv.Serve(ctx, pc) }()
	poll := time.NewTicker(n.cfg.Poll)
	defer poll.Stop()
	lastAnnounce := n.clk.Now()
	for {
		select {
		case <-ctx.Done():
			<-errc
			return nil
		case err := <-errc:
			return err
		case <-poll.C:
			if err := n.src.refresh(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("hosted nucleus: refreshing networks failed", "err", err)
			}
			if n.clk.Now().Sub(lastAnnounce) >= n.cfg.Announce {
				if err := n.announce(ctx); err != nil && ctx.Err() == nil {
					n.log.Warn("hosted nucleus: announcing the entry failed", "err", err)
				} else {
					lastAnnounce = n.clk.Now()
				}
			}
		}
	}
}

// announce finds the user-server entry (by id, else by name), creates it
// when missing and corrects its host, country and public key when they
// differ.
func (n *Nucleus) announce(ctx context.Context) error {
	list, err := n.api.UserServers(ctx)
	if err != nil {
		return err
	}
	want := wire.UserServerRequest{Name: n.cfg.Name, Host: n.cfg.Public, Country: n.cfg.Country, PublicKey: n.pub.String()}
	var found *wire.UserServer
	for i, s := range list {
		if (n.cfg.ServerID != "" && s.ID == n.cfg.ServerID) || (n.cfg.ServerID == "" && s.Name == n.cfg.Name) {
			found = &list[i]
			break
		}
	}
	var got wire.UserServer
	switch {
	case found == nil && n.cfg.ServerID != "":
		return fmt.Errorf("user server %s not found", n.cfg.ServerID)
	case found == nil:
		if got, err = n.api.CreateUserServer(ctx, want); err != nil {
			return err
		}
		n.log.Info("hosted nucleus: user server created", "server_id", got.ID, "host", got.Host)
	case found.Host != want.Host || found.Country != want.Country || found.PublicKey != want.PublicKey:
		want.Name = found.Name
		if got, err = n.api.UpdateUserServer(ctx, found.ID, want); err != nil {
			return err
		}
		n.log.Info("hosted nucleus: user server updated", "server_id", got.ID, "host", got.Host, "was", found.Host,
			"public_key", got.PublicKey, "key_was", found.PublicKey)
	default:
		got = *found
	}
	n.mu.Lock()
	n.serverID = got.ID
	n.mu.Unlock()
	return nil
}

func (n *Nucleus) fetch(ctx context.Context) ([]wire.ServedNetwork, error) {
	return n.api.ServedNetworks(ctx, n.ServerID())
}

// startAttempts bounds the retries of one start-up call.
const startAttempts = 20

func (n *Nucleus) retry(ctx context.Context, what string, f func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !client.Retryable(err) || attempt+1 >= startAttempts {
			return fmt.Errorf("hosted nucleus: %s: %w", what, err)
		}
		wait := client.Backoff(attempt, client.RetryAfter(err), rand.Float64)
		n.log.Warn("control plane call failed; retrying", "call", what, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// source answers the nucleus's questions (it is its Directory) from the
// last poll, polling again (at most every refetchEvery) when asked after
// that, so that a new network, member or key is served within moments
// rather than at the next poll. Each poll that changes a network tells the
// nucleus, which evicts devices that left and announces a new secret.
type source struct {
	clk       clock.Clock
	log       *slog.Logger
	fetch     func(context.Context) ([]wire.ServedNetwork, error)
	onChanged func(networkID string)

	fetchMu   sync.Mutex // one fetch at a time
	mu        sync.Mutex
	nets      map[string]servedNet
	lastFetch time.Time
}

type servedNet struct {
	info nucleus.NetworkInfo
}

// same reports whether two answers are the same.
func (a servedNet) same(b servedNet) bool {
	return string(a.info.Secret) == string(b.info.Secret) && a.info.SecretVersion == b.info.SecretVersion &&
		slices.Equal(a.info.Members, b.info.Members)
}

// refetchEvery bounds the on-demand fetches.
const refetchEvery = 2 * time.Second

func (s *source) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nets)
}

// refresh replaces the served set with the control plane's answer and
// tells the nucleus about every network that changed or is gone.
func (s *source) refresh(ctx context.Context) error {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	return s.refreshLocked(ctx)
}

// refreshIfStale is refresh unless a fetch younger than refetchEvery
// (one that ran while this call waited for the previous) is at hand:
// lookups arriving together cause one fetch.
func (s *source) refreshIfStale(ctx context.Context) error {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	if !s.stale() {
		return nil
	}
	return s.refreshLocked(ctx)
}

func (s *source) stale() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clk.Now().Sub(s.lastFetch) >= refetchEvery
}

// refreshLocked is refresh with fetchMu held.
func (s *source) refreshLocked(ctx context.Context) error {
	list, err := s.fetch(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]servedNet, len(list))
	for _, n := range list {
		sn := servedNet{info: nucleus.NetworkInfo{Secret: []byte(n.SecretKey), SecretVersion: uint32(n.SecretVersion)}}
		for _, m := range n.Members {
			b, ok := binding(m)
			if !ok {
				continue // no key (yet): not admitted
			}
			sn.info.Members = append(sn.info.Members, b)
		}
		slices.SortFunc(sn.info.Members, func(a, b nucleus.Binding) int { return a.IP4.Compare(b.IP4) })
		next[n.ID] = sn
	}
	var changed []string
	s.mu.Lock()
	for id, old := range s.nets {
		if n, ok := next[id]; !ok || !n.same(old) {
			changed = append(changed, id)
		}
	}
	s.nets, s.lastFetch = next, s.clk.Now()
	s.mu.Unlock()
	if s.onChanged != nil {
		for _, id := range changed {
			s.onChanged(id)
		}
	}
	return nil
}

// binding reads a served member's addresses and key.
func binding(m wire.ServedMember) (nucleus.Binding, bool) {
	ip4, err := netip.ParseAddr(m.VirtualIP)
	if err != nil || !ip4.Is4() {
		return nucleus.Binding{}, false
	}
	k, err := wgkey.ParsePublic(m.PublicKey)
	if err != nil {
		return nucleus.Binding{}, false
	}
	b := nucleus.Binding{Key: k, IP4: ip4}
	if ip6, err := netip.ParseAddr(m.VirtualIPv6); err == nil && ip6.Is6() {
		b.IP6 = ip6
	}
	return b, true
}

// Network implements nucleus.Directory: the last poll's answer, after
// polling again when that is more than refetchEvery old.
func (s *source) Network(ctx context.Context, id string) (nucleus.NetworkInfo, error) {
	if s.stale() {
		if err := s.refreshIfStale(ctx); err != nil {
			s.log.Warn("hosted nucleus: fetching networks failed", "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nets[id]
	if !ok {
		return nucleus.NetworkInfo{}, nucleus.ErrUnknownNetwork
	}
	return n.info, nil
}
