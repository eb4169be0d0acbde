package tunnel

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// firstPackets writes a packet each way, every 10 ms, until it arrives,
// and reports whether both arrived within limit of start.
func firstPackets(a, b *node, start time.Time, limit time.Duration) (ab, ba time.Duration, ok bool) {
	if !tryDeliverEvery(a, b, tuntest.Ping(b.v4, a.v4), time.Until(start.Add(limit))) {
		return time.Since(start), 0, false
	}
	ab = time.Since(start)
	if !tryDeliverEvery(b, a, tuntest.Ping(a.v4, b.v4), time.Until(start.Add(limit))) {
		return ab, time.Since(start), false
	}
	return ab, time.Since(start), true
}

func tryDeliverEvery(from, to *node, pkt []byte, within time.Duration) bool {
	if within <= 0 {
		return false
	}
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case from.tun.Outbound <- pkt:
		case <-deadline.C:
			return false
		}
	wait:
		for {
			select {
			case got := <-to.in:
				if bytes.Equal(got, pkt) {
					return true
				}
			case <-tick.C:
				break wait
			case <-deadline.C:
				return false
			}
		}
	}
}

// lowerFirst orders two nodes by public key.
func lowerFirst(a, b *node) (lo, hi *node) {
	ka, kb := a.dev.PublicKey(), b.dev.PublicKey()
	if bytes.Compare(ka[:], kb[:]) < 0 {
		return a, b
	}
	return b, a
}

// Two devices that add each other at the same moment (as two edges do
// when both choose the path on one PONG) both start a handshake. Crossed
// initiations left each side without a session, or one side sending on a
// session whose receive index it had dropped, until wireguard-go retried
// 5 or 15 s later. Fifty pairs (fresh keys each) must all exchange their
// first packets within 2 s, directly and through the relay.
func TestSimultaneousFirstHandshake(t *testing.T) {
	const (
		rounds = 50
		limit  = 2 * time.Second
	)
	relay := newFakeRelay(t)
	slow := 0
	for i := 0; i < rounds; i++ {
		relayed := i%5 == 4
		a := newNode(t, 1, "s3cret", relay.addr())
		b := newNode(t, 2, "s3cret", relay.addr())
		pa, pb := a.peer(), b.peer()
		if relayed {
			relay.register(a.dev.PublicKey(), a.addr())
			relay.register(b.dev.PublicKey(), b.addr())
			pa.Relayed, pb.Relayed = true, true
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, x := range []struct {
			n *node
			p Peer
		}{{a, pb}, {b, pa}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := x.n.dev.SetPeers([]Peer{x.p}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		ab, ba, ok := firstPackets(a, b, start, limit)
		if !ok {
			slow++
			t.Errorf("round %d (relayed %v): first packets a→b %v, b→a %v: not both within %v",
				i, relayed, ab.Round(time.Millisecond), ba.Round(time.Millisecond), limit)
		}
		a.dev.Close()
		b.dev.Close()
	}
	if slow > 0 {
		t.Logf("%d of %d rounds slow", slow, rounds)
	}
}

// When one side adds the other later, the first handshake still
// completes soon: the lower key's initiation, sent a moment after it adds
// the peer, reaches a peer that added it a little later, and the higher
// key does not wait longer than its hold for an initiation that does not
// come (dropped by the peer that did not know it yet).
func TestFirstHandshakeOneSideLate(t *testing.T) {
	const limit = 2 * time.Second
	for _, late := range []string{"lower", "higher"} {
		for _, gap := range []time.Duration{50 * time.Millisecond, 400 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s adds %v later", late, gap), func(t *testing.T) {
				lo, hi := lowerFirst(newNode(t, 1, "s3cret", netip.AddrPort{}), newNode(t, 2, "s3cret", netip.AddrPort{}))
				first, second := lo, hi
				if late == "lower" {
					first, second = hi, lo
				}
				other := func(n *node) *node {
					if n == lo {
						return hi
					}
					return lo
				}
				if err := first.dev.SetPeers([]Peer{other(first).peer()}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(gap) // the skew under test, not a wait for a result
				if err := second.dev.SetPeers([]Peer{other(second).peer()}); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if ab, ba, ok := firstPackets(first, second, start, limit); !ok {
					t.Fatalf("first packets %v, %v: not both within %v of the second add", ab, ba, limit)
				}
			})
		}
	}
}

// A device that restarts with the same key finds its peer still holding
// the old session, so the peer starts no handshake. Whichever key it has,
// its first packets cross within 2 s: the lower key initiates at once,
// the higher one when its hold ends.
func TestFirstHandshakeAfterRestart(t *testing.T) {
	const limit = 2 * time.Second
	for _, restarted := range []string{"lower", "higher"} {
		t.Run(restarted+" key restarts", func(t *testing.T) {
			var privs [2]wgkey.Key
			for i := range privs {
				var err error
				if privs[i], err = wgkey.GeneratePrivate(); err != nil {
					t.Fatal(err)
				}
			}
			a, b := newNodeKey(t, 1, "s3cret", netip.AddrPort{}, privs[0]), newNodeKey(t, 2, "s3cret", netip.AddrPort{}, privs[1])
			lo, _ := lowerFirst(a, b)
			r, rPriv, s := a, privs[0], b
			if (restarted == "lower") != (lo == a) {
				r, rPriv, s = b, privs[1], a
			}
			if err := r.dev.SetPeers([]Peer{s.peer()}); err != nil {
				t.Fatal(err)
			}
			if err := s.dev.SetPeers([]Peer{r.peer()}); err != nil {
				t.Fatal(err)
			}
			if _, _, ok := firstPackets(r, s, time.Now(), 10*time.Second); !ok {
				t.Fatal("no session before the restart")
			}
			r.dev.Close()
			r = newNodeKey(t, r.v4.As4()[3], "s3cret", netip.AddrPort{}, rPriv)
			// The survivor learns the new port (its session stays), the
			// restarted device adds the survivor afresh.
			if err := s.dev.SetPeers([]Peer{r.peer()}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := r.dev.SetPeers([]Peer{s.peer()}); err != nil {
				t.Fatal(err)
			}
			if rs, sr, ok := firstPackets(r, s, start, limit); !ok {
				t.Fatalf("after the restart: %v, %v: not both within %v", rs, sr, limit)
			}
		})
	}
}
