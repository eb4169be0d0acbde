package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/server/app"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// replica is one control plane with its built-in nucleus on loopback.
type replica struct {
	app *app.App
	nuc *nucleus.Server
	at  netip.AddrPort
}

// startReplicas runs n control planes on one database (and Redis when
// given), each with the nucleus `omni serve` builds, until the test ends.
func startReplicas(t *testing.T, n int, dsn string, redisOn bool) []*replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	key := auth.RandomBytes(32)
	cfg := config.Default()
	cfg.NucleusListen = "127.0.0.1:51820"
	var rs []*replica
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	deps := app.Deps{Clock: clock.Real{}, Log: logging.Discard(), MasterKey: key}
	if redisOn {
		deps.Redis, deps.RedisPrefix = testenv.Redis(t)
	}
	for range n {
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		d := deps
		d.DB = db
		a, err := app.New(ctx, &cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		nuc, err := a.Nucleus(nucleus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = a.RunBackground(ctx) }()
		go func() { defer wg.Done(); _ = nuc.Serve(ctx, pc) }()
		rs = append(rs, &replica{app: a, nuc: nuc, at: pc.LocalAddr().(*net.UDPAddr).AddrPort()})
	}
	// The nucleus key derives from the master key: every replica (and
	// every restart) has the same, the one join answers name.
	want, err := app.NucleusKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.nuc.PublicKey() != nucleus.PublicKeyOf(want) {
			t.Fatalf("replica %d's nucleus key %v, want %v", i, r.nuc.PublicKey(), nucleus.PublicKeyOf(want))
		}
	}
	testenv.EventuallyWithin(t, "replicas following the network notices", 5*time.Second, func() bool {
		for _, r := range rs {
			if !r.app.Ready() {
				return false
			}
		}
		return true
	})
	return rs
}

// member is a device with a nucleus client on its own socket.
type member struct {
	key wgkey.Key
	jr  control.JoinResult
	c   *nucleus.Client

	mu    sync.Mutex
	peers []nucleus.Peer
}

func (m *member) sees(k wgkey.Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.peers {
		if p.PublicKey == k {
			return true
		}
	}
	return false
}

// join registers device id, joins it and registers it at the nucleus at,
// whose key is serverKey.
func join(t *testing.T, svc *control.Service, p control.Principal, networkID string, id byte, at netip.AddrPort, serverKey wgkey.Key) *member {
	t.Helper()
	ctx := context.Background()
	seed := sha256.Sum256([]byte{id})
	priv, err := nucleus.NewPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	k := nucleus.PublicKeyOf(priv)
	hw := fmt.Sprintf("hw-%d", id)
	d, _, err := svc.RegisterDevice(ctx, p, hw, hw, "linux", k.String())
	if err != nil {
		t.Fatal(err)
	}
	jr, err := svc.Join(ctx, p, networkID, d.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &member{key: k, jr: jr}
	m.c, err = nucleus.NewClient(nucleus.ClientConfig{NetworkID: networkID, Secret: []byte(jr.Secret), PrivateKey: priv, ServerKey: serverKey,
		IP4: jr.IP4, IP6: jr.IP6, Server: at, Keepalive: 200 * time.Millisecond,
		Send: func(b []byte, to netip.AddrPort) error { _, err := conn.WriteToUDPAddrPort(b, to); return err }})
	if err != nil {
		t.Fatal(err)
	}
	m.c.OnPeers(func(ps []nucleus.Peer) { m.mu.Lock(); m.peers = ps; m.mu.Unlock() })
	go func() {
		buf := make([]byte, nucleus.MaxFrame+1)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m.c.Handle(buf[:n], from)
		}
	}()
	ctx2, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go m.c.Run(ctx2)
	return m
}

// evictionScenario: X and Y are registered at the last replica's nucleus;
// X leaves through the first replica's API; the last replica's nucleus
// evicts X (Y hears the leave) within 2 s, and X, still holding the old
// secret, cannot come back.
func evictionScenario(t *testing.T, rs []*replica) {
	ctx := context.Background()
	svc, far := rs[0].app.Service, rs[len(rs)-1]
	u, err := svc.CreateUser(ctx, fmt.Sprintf("u%d@example.com", time.Now().UnixNano()), "correct horse battery", "pro")
	if err != nil {
		t.Fatal(err)
	}
	p := control.Principal{UserID: u.ID}
	n, err := svc.CreateNetwork(ctx, p, "home", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// The key of the first replica's nucleus is the far one's too.
	x := join(t, svc, p, n.ID, 1, far.at, rs[0].nuc.PublicKey())
	y := join(t, svc, p, n.ID, 2, far.at, rs[0].nuc.PublicKey())
	testenv.EventuallyWithin(t, "X and Y registered", 5*time.Second, func() bool { return y.sees(x.key) && x.sees(y.key) })

	if err := svc.Leave(ctx, p, n.ID, x.jr.Membership.DeviceID); err != nil {
		t.Fatal(err)
	}
	took := testenv.EventuallyWithin(t, "X evicted at the other replica's nucleus", 2*time.Second, func() bool {
		return len(far.nuc.Peers(n.ID)) == 1 && !y.sees(x.key)
	})
	t.Logf("evicted after %v", took)
	// X keeps trying with the old secret and its key: refused.
	if err := x.c.Register(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if ps := far.nuc.Peers(n.ID); len(ps) != 1 || ps[0].PublicKey != y.key {
		t.Fatalf("peers %v after the former member registered again", ps)
	}
}

// With several replicas sharing PostgreSQL and Redis, a device that
// leaves is evicted from every replica's nucleus within 2 s.
func TestLeaveEvictsOnEveryReplica(t *testing.T) {
	evictionScenario(t, startReplicas(t, 2, testenv.Postgres(t), true))
}

// One process without Redis: the same through the in-process bus.
func TestLeaveEvictsInProcess(t *testing.T) {
	evictionScenario(t, startReplicas(t, 1, "sqlite://"+filepath.Join(t.TempDir(), "omni.db"), false))
}

// A login session revoked before a restart stays revoked after it: the
// revocation set is loaded from the database at start, so the session's
// access tokens (valid for the rest of their lifetime) are still refused.
func TestRevokedSessionsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite://" + filepath.Join(t.TempDir(), "omni.db")
	key := auth.RandomBytes(32)
	clk := clock.NewFake(time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC))
	cfg := config.Default()
	open := func() *app.App {
		t.Helper()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		a, err := app.New(ctx, &cfg, app.Deps{DB: db, Clock: clk, Log: logging.Discard(), MasterKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := open()
	u, err := a.Service.CreateUser(ctx, "restart@example.com", "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := a.Service.CreateSecurityKey(ctx, u.ID, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := a.Service.LoginSecurityKey(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	live, err := a.Service.LoginSecurityKey(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Service.Logout(ctx, revoked.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Authenticate(revoked.Token); control.KindOf(err) != control.KindUnauthorized {
		t.Fatalf("revoked session before the restart: %v", err)
	}

	clk.Advance(time.Minute)
	b := open()
	if _, err := b.Service.Authenticate(revoked.Token); control.KindOf(err) != control.KindUnauthorized {
		t.Fatalf("the access token of a session revoked before the restart is accepted after it: %v", err)
	}
	if _, err := b.Service.Authenticate(live.Token); err != nil {
		t.Fatalf("a live session is refused after the restart: %v", err)
	}
}

// Run serves the built-in nucleus on --nucleus-listen until ctx ends, and
// fails at once when that port is taken, as `omni serve` relies on.
func TestRunServesNucleus(t *testing.T) {
	ctx := context.Background()
	open := func(listen string, log *slog.Logger) *app.App {
		t.Helper()
		db, err := sqldb.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "omni.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		cfg := config.Default()
		cfg.NucleusListen = listen
		a, err := app.New(ctx, &cfg, app.Deps{DB: db, Clock: clock.Real{}, Log: logging.Discard(), MasterKey: auth.RandomBytes(32), NucleusLog: log})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// Run says where the nucleus listens (port 0: the kernel picks one).
	var logs lockedBuffer
	a := open("127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	var addr string
	listening := regexp.MustCompile(`msg="nucleus listening" addr=(\S+)`)
	testenv.EventuallyWithin(t, "the nucleus listening", 5*time.Second, func() bool {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	if pc, err := net.ListenPacket("udp", addr); err == nil {
		pc.Close()
		t.Fatalf("%s not bound while Run runs", addr)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("%s still bound after Run returned: %v", addr, err)
	}
	pc.Close()

	hold, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	b := open(hold.LocalAddr().String(), nil)
	failed := make(chan error, 1)
	go func() { failed <- b.Run(ctx) }()
	select {
	case err := <-failed:
		if err == nil || !strings.HasPrefix(err.Error(), "nucleus: ") {
			t.Fatalf("Run with the nucleus port taken: %v, want a nucleus: error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run with the nucleus port taken did not fail")
	}
}

// lockedBuffer is an io.Writer safe for concurrent logging.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
