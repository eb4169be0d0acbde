package store_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- networks ----

func testCreateNetwork(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	r6 := ula(t, 24)
	n := control.Network{ID: "n1", OwnerID: "u1", Name: "home", Range: netip.MustParsePrefix("100.66.1.0/24"), Range6: r6, SecretSealed: "v1:abc", CreatedAt: at(time.Second)}
	got, err := s.CreateNetwork(ctx, n, 0, noPick(t))
	must(t, err)
	if got.Range != n.Range || got.Range6 != r6 {
		t.Fatalf("CreateNetwork = %+v", got)
	}
	stored, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if stored.ID != "n1" || stored.OwnerID != "u1" || stored.Name != "home" || stored.Range != n.Range || stored.Range6 != r6 ||
		stored.SecretSealed != "v1:abc" || stored.ServerID != "" || !stored.CreatedAt.Equal(n.CreatedAt) {
		t.Fatalf("NetworkByID = %+v, want %+v", stored, n)
	}
	_, err = s.NetworkByID(ctx, "missing")
	wantErr(t, err, control.ErrNotFound)

	// Duplicate id.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "n1", OwnerID: "u1", Name: "dup", Range: netip.MustParsePrefix("100.66.9.0/24"), Range6: ula(t, 24), CreatedAt: t0}, 0, noPick(t))
	wantErr(t, err, control.ErrConflict)

	addNetwork(t, s, "u2", "n2", "100.66.2.0/24")
	n0 := control.Network{ID: "n9", OwnerID: "u1", Name: "early", Range: netip.MustParsePrefix("100.66.3.0/24"), Range6: ula(t, 24), CreatedAt: t0}
	_, err = s.CreateNetwork(ctx, n0, 0, noPick(t))
	must(t, err)

	ids := func(ns []control.Network) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	list, err := s.ListNetworks(ctx, "u1")
	must(t, err)
	if got := ids(list); !slices.Equal(got, []string{"n9", "n1"}) {
		t.Fatalf("ListNetworks(u1) = %v", got)
	}
	all, err := s.ListNetworks(ctx, "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("ListNetworks(\"\") = %v", ids(all))
	}
}

func testCreateNetworkLimit(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	mk := func(owner, id, cidr string, max int) error {
		r := netip.MustParsePrefix(cidr)
		_, err := s.CreateNetwork(ctx, control.Network{ID: id, OwnerID: owner, Name: id, Range: r, Range6: ula(t, r.Bits()), CreatedAt: t0}, max, noPick(t))
		return err
	}
	must(t, mk("u1", "a", "100.66.1.0/24", 2))
	must(t, mk("u1", "b", "100.66.2.0/24", 2))
	wantErr(t, mk("u1", "c", "100.66.3.0/24", 2), control.ErrLimit)
	if _, err := s.NetworkByID(ctx, "c"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network over the limit stored: %v", err)
	}
	must(t, mk("u2", "d", "100.66.4.0/24", 2)) // per owner
	must(t, mk("u1", "e", "100.66.5.0/24", 0)) // 0: unlimited
}

func testCreateNetworkPick(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addNetwork(t, s, "u1", "a", "100.66.0.0/24")
	addNetwork(t, s, "u1", "b", "100.70.0.0/16")

	var seen []netip.Prefix
	pick := func(used []netip.Prefix) (netip.Prefix, error) {
		seen = slices.Clone(used)
		return ipam.PickRange(used)
	}
	got, err := s.CreateNetwork(ctx, control.Network{ID: "c", OwnerID: "u1", Name: "picked", Range6: ula(t, 24), CreatedAt: t0}, 0, pick)
	must(t, err)
	slices.SortFunc(seen, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	want := []netip.Prefix{netip.MustParsePrefix("100.66.0.0/24"), netip.MustParsePrefix("100.70.0.0/16")}
	if !slices.Equal(seen, want) {
		t.Fatalf("pick got used = %v, want %v", seen, want)
	}
	if got.Range != netip.MustParsePrefix("100.66.1.0/24") {
		t.Fatalf("picked range = %v, want 100.66.1.0/24", got.Range)
	}
	stored, err := s.NetworkByID(ctx, "c")
	must(t, err)
	if stored.Range != got.Range {
		t.Fatalf("stored range = %v, want %v", stored.Range, got.Range)
	}

	// The next pick sees the picked range too.
	got, err = s.CreateNetwork(ctx, control.Network{ID: "d", OwnerID: "u1", Name: "picked2", Range6: ula(t, 24), CreatedAt: t0}, 0, ipam.PickRange)
	must(t, err)
	if got.Range != netip.MustParsePrefix("100.66.2.0/24") {
		t.Fatalf("second pick = %v", got.Range)
	}

	// pick's error is returned and nothing is stored.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "e", OwnerID: "u1", Name: "full", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func([]netip.Prefix) (netip.Prefix, error) { return netip.Prefix{}, ipam.ErrNoRange })
	wantErr(t, err, ipam.ErrNoRange)
	if _, err := s.NetworkByID(ctx, "e"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network stored after pick failed: %v", err)
	}
	// A pick that returns a used range is rejected as an overlap.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "f", OwnerID: "u1", Name: "bad pick", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func([]netip.Prefix) (netip.Prefix, error) { return netip.MustParsePrefix("100.70.5.0/24"), nil })
	wantErr(t, err, control.ErrOverlap)
}

func testCreateNetworkOverlap(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	addNetwork(t, s, "u1", "a", "100.66.1.0/24")
	for _, cidr := range []string{"100.66.1.0/24", "100.66.1.128/25", "100.66.0.0/16", "100.64.0.0/10", "100.66.1.252/30"} {
		r := netip.MustParsePrefix(cidr)
		_, err := s.CreateNetwork(ctx, control.Network{ID: "x" + cidr, OwnerID: "u1", Name: "x", Range: r, Range6: ula(t, r.Bits()), CreatedAt: t0}, 0, noPick(t))
		if !errors.Is(err, control.ErrOverlap) {
			t.Fatalf("CreateNetwork(%s) = %v, want ErrOverlap", cidr, err)
		}
	}
	// Ranges are per owner: another owner may take the same range, and
	// the default pick sees only the owner's own ranges.
	addNetwork(t, s, "u2", "same", "100.66.1.0/24")
	var seen []netip.Prefix
	got, err := s.CreateNetwork(ctx, control.Network{ID: "p", OwnerID: "u2", Name: "p", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func(used []netip.Prefix) (netip.Prefix, error) { seen = used; return ipam.PickRange(used) })
	must(t, err)
	if len(seen) != 1 || seen[0].String() != "100.66.1.0/24" || got.Range.String() != "100.66.0.0/24" {
		t.Fatalf("pick saw %v and chose %s; want only u2's 100.66.1.0/24 and 100.66.0.0/24", seen, got.Range)
	}
	// Adjacent ranges are fine.
	addNetwork(t, s, "u1", "b", "100.66.0.0/24")
	addNetwork(t, s, "u1", "c", "100.66.2.0/23")
	all, err := s.ListNetworks(ctx, "")
	must(t, err)
	if len(all) != 5 {
		t.Fatalf("%d networks stored, want 5", len(all))
	}
}

func testCreateNetworkUniqueIPv6(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	r6 := ula(t, 24)
	_, err := s.CreateNetwork(ctx, control.Network{ID: "a", OwnerID: "u1", Name: "a", Range: netip.MustParsePrefix("100.66.1.0/24"), Range6: r6, CreatedAt: t0}, 0, noPick(t))
	must(t, err)
	_, err = s.CreateNetwork(ctx, control.Network{ID: "b", OwnerID: "u1", Name: "b", Range: netip.MustParsePrefix("100.66.2.0/24"), Range6: r6, CreatedAt: t0}, 0, noPick(t))
	wantErr(t, err, control.ErrConflict)
	if _, err := s.NetworkByID(ctx, "b"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network with duplicate v6 range stored: %v", err)
	}
}

func testCreateNetworkConcurrent(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	const n = 10
	nets := make([]control.Network, n)
	errs := make([]error, n)
	r6s := make([]netip.Prefix, n)
	for i := range n {
		r6s[i] = ula(t, 24)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			nets[i], errs[i] = s.CreateNetwork(ctx, control.Network{ID: fmt.Sprintf("n%d", i), OwnerID: "u1", Name: "c", Range6: r6s[i], CreatedAt: t0}, 0, ipam.PickRange)
		})
	}
	close(start)
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent CreateNetwork: %v", errs[i])
		}
		if seen[nets[i].Range] {
			t.Fatalf("range %v picked twice", nets[i].Range)
		}
		seen[nets[i].Range] = true
	}
}

func testUpdateDeleteNetwork(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateUserServer(ctx, control.UserServer{ID: "s1", UserID: "u1", Name: "srv", Host: "srv.example.com:443", Country: "DE", CreatedAt: t0, UpdatedAt: t0}))
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")

	n.Name, n.ServerID, n.DNSName = "renamed", "s1", "office"
	n.Range = netip.MustParsePrefix("100.99.0.0/24") // not updatable
	must(t, s.UpdateNetwork(ctx, n))
	got, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if got.Name != "renamed" || got.ServerID != "s1" || got.DNSName != "office" || got.Range != netip.MustParsePrefix("100.66.1.0/24") {
		t.Fatalf("after update: %+v", got)
	}
	n.ServerID = ""
	must(t, s.UpdateNetwork(ctx, n))
	got, _ = s.NetworkByID(ctx, "n1")
	if got.ServerID != "" {
		t.Fatalf("server not cleared: %+v", got)
	}
	// An unknown server is refused by the foreign key.
	n.ServerID = "s_missing"
	if err := s.UpdateNetwork(ctx, n); err == nil {
		t.Fatal("UpdateNetwork accepted an unknown server id")
	}
	wantErr(t, s.UpdateNetwork(ctx, control.Network{ID: "missing", Name: "x"}), control.ErrNotFound)

	addUser(t, s, "u2")
	addDevice(t, s, "u2", "d1")
	join(t, s, n, "d1")
	e := epoch(t, s)
	must(t, s.DeleteNetwork(ctx, "n1"))
	if epoch(t, s) <= e {
		t.Fatal("epoch did not advance on DeleteNetwork")
	}
	_, err = s.NetworkByID(ctx, "n1")
	wantErr(t, err, control.ErrNotFound)
	ms, err := s.DeviceMemberships(ctx, "d1")
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("memberships of deleted network remain: %+v", ms)
	}
	wantErr(t, s.DeleteNetwork(ctx, "n1"), control.ErrNotFound)
	// Its range is free again.
	addNetwork(t, s, "u1", "n2", "100.66.1.0/24")
}

func testSubnetRoutes(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "r1")
	addDevice(t, s, "u1", "r2")
	addDevice(t, s, "u1", "plain")
	join(t, s, n, "r1")
	join(t, s, n, "r2")
	join(t, s, n, "plain")
	if got, err := s.NetworkRoutes(ctx, "n1"); err != nil || len(got) != 0 {
		t.Fatalf("routes before any: %v %v", got, err)
	}
	must(t, s.SetAdvertisedRoutes(ctx, "r1", "10.1.0.0/24,fd00:1::/64"))
	must(t, s.SetApprovedRoutes(ctx, "n1", "r2", "10.2.0.0/24"))
	got, err := s.NetworkRoutes(ctx, "n1")
	must(t, err)
	want := map[string]control.StoredRoutes{"r1": {Advertised: "10.1.0.0/24,fd00:1::/64"}, "r2": {Approved: "10.2.0.0/24"}}
	if len(got) != 2 || got["r1"] != want["r1"] || got["r2"] != want["r2"] {
		t.Fatalf("NetworkRoutes = %+v, want %+v", got, want)
	}
	if adv, err := s.AdvertisedRoutes(ctx, "r1"); err != nil || adv != "10.1.0.0/24,fd00:1::/64" {
		t.Fatalf("AdvertisedRoutes = %q %v", adv, err)
	}
	wantErr(t, s.SetApprovedRoutes(ctx, "n1", "missing", "10.3.0.0/24"), control.ErrNotFound)
	wantErr(t, s.SetAdvertisedRoutes(ctx, "missing", ""), control.ErrNotFound)
	if _, err := s.AdvertisedRoutes(ctx, "missing"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("AdvertisedRoutes(missing) = %v", err)
	}
}
