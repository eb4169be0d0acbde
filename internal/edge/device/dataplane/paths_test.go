package dataplane

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

var (
	t0      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	relayAt = netip.MustParseAddrPort("198.51.100.1:51820")
	keyB    = wgkey.Key{2}
	peerB   = nucleus.Peer{PublicKey: keyB, IP4: netip.MustParseAddr("100.66.0.2"),
		Endpoint: netip.MustParseAddrPort("203.0.113.2:40000"), Local: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.2:51820")}}
)

// pathOf is B's entry in the tunnel's peer set.
func pathOf(t *testing.T, ps *paths) daemon.Peer {
	t.Helper()
	got := ps.daemonPeers(relayAt)
	if len(got) != 1 || got[0].PublicKey != wgkey.Key(keyB) || got[0].VirtualIP != peerB.IP4 {
		t.Fatalf("peer set %+v", got)
	}
	return got[0]
}

func wantDirect(t *testing.T, ps *paths, at netip.AddrPort) {
	t.Helper()
	if p := pathOf(t, ps); p.Relayed || p.Endpoint != at {
		t.Fatalf("path %+v, want direct at %v", p, at)
	}
}

func wantProbing(t *testing.T, ps *paths) {
	t.Helper()
	if p := pathOf(t, ps); p.Relayed || p.Endpoint.IsValid() {
		t.Fatalf("path %+v, want no endpoint while probing", p)
	}
}

// wantHidden: a new peer stays out of the tunnel until its path is chosen.
func wantHidden(t *testing.T, ps *paths) {
	t.Helper()
	if got := ps.daemonPeers(relayAt); len(got) != 0 {
		t.Fatalf("peer set %+v, want none while a new peer is probed", got)
	}
}

func wantRelayed(t *testing.T, ps *paths) {
	t.Helper()
	if p := pathOf(t, ps); !p.Relayed || p.Endpoint != relayAt {
		t.Fatalf("path %+v, want relayed via %v", p, relayAt)
	}
}

func wantPunch(t *testing.T, probes []probe) {
	t.Helper()
	if len(probes) != 1 || !probes[0].punch || probes[0].peer != keyB || len(probes[0].ping) != 0 {
		t.Fatalf("probes %+v, want one punch request for B", probes)
	}
}

func TestNewPeerIsProbedThenDirect(t *testing.T) {
	if got := targets(peerB); len(got) != 2 || got[0] != peerB.Endpoint || got[1] != peerB.Local[0] {
		t.Fatalf("targets %v, want the observed then the local endpoint", got)
	}
	ps := newPaths(PathConfig{})
	wantPunch(t, ps.set(t0, []nucleus.Peer{peerB}))
	wantHidden(t, ps) // no relay, and no direct packet before a PONG
	if changed, probes := ps.tick(t0.Add(500*time.Millisecond), nil); changed || len(probes) != 0 {
		t.Fatalf("tick at 0.5 s: %v %+v", changed, probes)
	}
	changed, probes := ps.tick(t0.Add(time.Second), nil)
	if changed {
		t.Fatal("path changed without a PONG")
	}
	wantPunch(t, probes) // another PUNCH each second while probing

	// The first PONG makes it direct where it came from.
	if !ps.pong(t0.Add(1200*time.Millisecond), keyB, peerB.Endpoint) {
		t.Fatal("pong did not change the path")
	}
	wantDirect(t, ps, peerB.Endpoint)
	if ps.pong(t0.Add(1300*time.Millisecond), keyB, peerB.Local[0]) {
		t.Fatal("a second pong moved a direct path")
	}
	// Direct: a PING every 5 s; answered, it stays direct.
	for i := 1; i <= 4; i++ {
		now := t0.Add(1200*time.Millisecond + time.Duration(5*i)*time.Second)
		changed, probes = ps.tick(now, nil)
		if changed || len(probes) != 1 || probes[0].punch || len(probes[0].ping) != 1 || probes[0].ping[0] != peerB.Endpoint {
			t.Fatalf("tick %d: changed %v probes %+v, want one ping to the endpoint", i, changed, probes)
		}
		ps.pong(now, keyB, peerB.Endpoint)
	}
	wantDirect(t, ps, peerB.Endpoint)
}

func TestNoPongFallsBackToRelayAndRetries(t *testing.T) {
	ps := newPaths(PathConfig{})
	ps.set(t0, []nucleus.Peer{peerB})
	// A handshake does not confirm a path that has no endpoint.
	hs := map[wgkey.Key]time.Time{keyB: t0.Add(time.Second)}
	if changed, _ := ps.tick(t0.Add(4900*time.Millisecond), hs); changed {
		t.Fatal("relayed before the timeout")
	}
	wantHidden(t, ps)
	if changed, _ := ps.tick(t0.Add(5*time.Second), hs); !changed {
		t.Fatal("not relayed after 5 s without a PONG")
	}
	wantRelayed(t, ps)

	// While relayed: nothing until RetryEvery, then a PUNCH request.
	relayedAt := t0.Add(5 * time.Second)
	if _, probes := ps.tick(relayedAt.Add(29*time.Second), hs); len(probes) != 0 {
		t.Fatalf("probed early: %+v", probes)
	}
	_, probes := ps.tick(relayedAt.Add(30*time.Second), hs)
	wantPunch(t, probes)
	if _, probes := ps.tick(relayedAt.Add(31*time.Second), hs); len(probes) != 0 {
		t.Fatalf("probed twice: %+v", probes)
	}
	// A handshake seen while relayed does not bring it back by itself.
	if changed, _ := ps.tick(relayedAt.Add(32*time.Second), map[wgkey.Key]time.Time{keyB: relayedAt.Add(32 * time.Second)}); changed {
		t.Fatal("relayed peer left the relay without a pong")
	}
	wantRelayed(t, ps)

	// A PONG from the LAN address switches back to direct there.
	at := relayedAt.Add(33 * time.Second)
	if !ps.pong(at, keyB, peerB.Local[0]) {
		t.Fatal("pong did not change the path")
	}
	wantDirect(t, ps, peerB.Local[0])
	// A PONG from an unknown peer changes nothing.
	if ps.pong(at, wgkey.Key{9}, peerB.Endpoint) {
		t.Fatal("pong of an unknown peer changed a path")
	}
}

func TestSilentDirectPathFallsBack(t *testing.T) {
	ps := newPaths(PathConfig{})
	ps.set(t0, []nucleus.Peer{peerB})
	last := t0.Add(100 * time.Millisecond)
	ps.pong(last, keyB, peerB.Endpoint)
	for now := t0.Add(time.Second); now.Sub(last) <= 16*time.Second; now = now.Add(time.Second) {
		if changed, _ := ps.tick(now, nil); changed {
			t.Fatalf("relayed at %v after the last pong", now.Sub(last))
		}
	}
	// A fresh handshake counts as life too.
	hs := map[wgkey.Key]time.Time{keyB: last.Add(10 * time.Second)}
	if changed, _ := ps.tick(last.Add(20*time.Second), hs); changed {
		t.Fatal("relayed despite a handshake 10 s ago")
	}
	if changed, _ := ps.tick(last.Add(27*time.Second), hs); !changed {
		t.Fatal("silent direct path kept")
	}
	wantRelayed(t, ps)
}

func TestPeerSetChanges(t *testing.T) {
	ps := newPaths(PathConfig{})
	noEndpoint := nucleus.Peer{PublicKey: keyB, IP4: peerB.IP4}
	if probes := ps.set(t0, []nucleus.Peer{noEndpoint}); len(probes) != 0 {
		t.Fatalf("probes for a peer without endpoints: %+v", probes)
	}
	wantRelayed(t, ps) // nowhere to go direct

	// Roaming of a direct peer: probe again.
	ps = newPaths(PathConfig{})
	ps.set(t0, []nucleus.Peer{peerB})
	ps.pong(t0, keyB, peerB.Endpoint)
	moved := peerB
	moved.Endpoint = netip.MustParseAddrPort("203.0.113.7:40001")
	wantPunch(t, ps.set(t0.Add(time.Minute), []nucleus.Peer{moved}))
	wantProbing(t, ps)
	if !ps.pong(t0.Add(time.Minute), keyB, moved.Endpoint) {
		t.Fatal("pong after roaming did not change the path")
	}
	wantDirect(t, ps, moved.Endpoint)
	// Unchanged peer: no probes.
	if probes := ps.set(t0.Add(time.Minute), []nucleus.Peer{moved}); len(probes) != 0 {
		t.Fatalf("probes for an unchanged peer: %+v", probes)
	}
	// Roaming of a relayed peer: a PUNCH at the next tick.
	ps.tick(t0.Add(2*time.Minute), nil)
	wantRelayed(t, ps)
	moved.Endpoint = netip.MustParseAddrPort("203.0.113.8:40002")
	ps.set(t0.Add(2*time.Minute), []nucleus.Peer{moved})
	_, probes := ps.tick(t0.Add(2*time.Minute+time.Second), nil)
	wantPunch(t, probes)
	// Removed peer is gone.
	ps.set(t0.Add(3*time.Minute), nil)
	if got := ps.daemonPeers(relayAt); len(got) != 0 {
		t.Fatalf("removed peer kept: %+v", got)
	}
}

func TestIndexAndResolve(t *testing.T) {
	for name, want := range map[string]int{"omni0": 0, "omni3": 3, "wg": 0, "omni99999": 0} {
		if got := index(name); got != want {
			t.Errorf("index(%q) = %d, want %d", name, got, want)
		}
	}
	for in, want := range map[string]string{"127.0.0.1:9": "127.0.0.1:9", "[::1]:9": "[::1]:9", "10.0.0.1": "10.0.0.1:51820"} {
		got, err := resolve(t.Context(), in)
		if err != nil || got.String() != want {
			t.Errorf("resolve(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := resolve(t.Context(), "1.2.3.4:x"); err == nil {
		t.Error("bad port accepted")
	}
}

// Every change of a peer's path is one event: why it is relayed (no
// endpoint, probes unanswered, the direct path lost, retries unanswered:
// once, not per retry) and where it went direct.
func TestPathEventsSayWhy(t *testing.T) {
	ps := newPaths(PathConfig{})
	one := func(what string) pathEvent {
		t.Helper()
		ev := ps.drain()
		if len(ev) != 1 || ev[0].peer != keyB || ev[0].ip != peerB.IP4 {
			t.Fatalf("%s: events %+v, want one for B", what, ev)
		}
		return ev[0]
	}
	none := func(what string) {
		t.Helper()
		if ev := ps.drain(); len(ev) != 0 {
			t.Fatalf("%s: events %+v, want none", what, ev)
		}
	}
	ps.set(t0, []nucleus.Peer{{PublicKey: keyB, IP4: peerB.IP4}})
	if e := one("no endpoint"); !e.relayed || e.kept || !strings.Contains(e.reason, "no endpoint known") {
		t.Fatalf("no endpoint: %+v", e)
	}

	ps = newPaths(PathConfig{})
	ps.set(t0, []nucleus.Peer{peerB})
	none("probing")
	ps.tick(t0.Add(5*time.Second), nil)
	e := one("probes unanswered")
	if !e.relayed || e.kept || !strings.Contains(e.reason, "unanswered for 5s") || !strings.Contains(e.reason, peerB.Endpoint.String()) {
		t.Fatalf("probes unanswered: %+v", e)
	}
	// The retries fail: said once, not at every retry.
	at := t0.Add(5 * time.Second)
	for i := 1; i <= 3; i++ {
		ps.tick(at.Add(time.Duration(30*i)*time.Second), nil)
		ps.tick(at.Add(time.Duration(30*i+5)*time.Second), nil)
		if i == 1 {
			if e := one("retry unanswered"); !e.relayed || !e.kept || !strings.Contains(e.reason, "still unanswered") {
				t.Fatalf("retry unanswered: %+v", e)
			}
			continue
		}
		none("another retry unanswered")
	}
	ps.pong(at.Add(100*time.Second), keyB, peerB.Endpoint)
	if e := one("pong"); e.relayed || e.endpoint != peerB.Endpoint {
		t.Fatalf("direct: %+v", e)
	}
	ps.tick(at.Add(117*time.Second), nil)
	if e := one("silent"); !e.relayed || e.kept || !strings.Contains(e.reason, "lost") {
		t.Fatalf("direct path lost: %+v", e)
	}
}
