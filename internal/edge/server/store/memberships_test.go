package store_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- memberships ----

func testJoin(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}

	var gotUsed [][]uint32
	alloc := func(h uint32) func([]uint32) (uint32, error) {
		return func(used []uint32) (uint32, error) {
			gotUsed = append(gotUsed, slices.Sorted(slices.Values(used)))
			return h, nil
		}
	}
	m, created, err := s.Join(ctx, "n1", "a", at(time.Second), alloc(7))
	must(t, err)
	if !created || m.NetworkID != "n1" || m.DeviceID != "a" || m.Host != 7 || m.IsExitNode || m.ExitNodeID != "" || !m.JoinedAt.Equal(at(time.Second)) {
		t.Fatalf("Join = %+v, %v", m, created)
	}
	_, _, err = s.Join(ctx, "n1", "b", at(2*time.Second), alloc(3))
	must(t, err)
	_, _, err = s.Join(ctx, "n1", "c", at(3*time.Second), alloc(200))
	must(t, err)
	if len(gotUsed) != 3 || len(gotUsed[0]) != 0 || !slices.Equal(gotUsed[1], []uint32{7}) || !slices.Equal(gotUsed[2], []uint32{3, 7}) {
		t.Fatalf("alloc saw used = %v", gotUsed)
	}

	// Idempotent: the existing membership, alloc not called, no epoch bump needed.
	again, created, err := s.Join(ctx, "n1", "a", at(time.Hour), func([]uint32) (uint32, error) {
		t.Error("alloc called for an existing member")
		return 0, errors.New("unexpected")
	})
	must(t, err)
	if created || again.Host != 7 || !again.JoinedAt.Equal(at(time.Second)) {
		t.Fatalf("re-join = %+v, %v", again, created)
	}

	// alloc's error is returned and nothing is stored.
	addDevice(t, s, "u1", "d")
	_, created, err = s.Join(ctx, "n1", "d", t0, func([]uint32) (uint32, error) { return 0, control.ErrExhausted })
	wantErr(t, err, control.ErrExhausted)
	if created {
		t.Fatal("created reported on failure")
	}
	_, err = s.Membership(ctx, "n1", "d")
	wantErr(t, err, control.ErrNotFound)
	// An alloc that returns a used host is refused by the unique index.
	_, _, err = s.Join(ctx, "n1", "d", t0, alloc(3))
	if err == nil {
		t.Fatal("Join stored a duplicate host")
	}

	members, err := s.Members(ctx, "n1")
	must(t, err)
	var hosts []uint32
	for _, m := range members {
		hosts = append(hosts, m.Host)
	}
	if !slices.Equal(hosts, []uint32{3, 7, 200}) {
		t.Fatalf("Members hosts = %v, want sorted 3, 7, 200", hosts)
	}
	got := membership(t, s, "n1", "b")
	if got.Host != 3 || !got.JoinedAt.Equal(at(2*time.Second)) {
		t.Fatalf("Membership(b) = %+v", got)
	}
	_, err = s.Membership(ctx, "n1", "zz")
	wantErr(t, err, control.ErrNotFound)

	// DeviceMemberships in join order.
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	_, _, err = s.Join(ctx, n2.ID, "a", t0, alloc(1))
	must(t, err)
	dm, err := s.DeviceMemberships(ctx, "a")
	must(t, err)
	if len(dm) != 2 || dm[0].NetworkID != "n2" || dm[1].NetworkID != "n1" {
		t.Fatalf("DeviceMemberships(a) = %+v", dm)
	}
	_ = n

	// Joining an unknown network or device is refused by the foreign keys.
	if _, _, err := s.Join(ctx, "n_missing", "a", t0, alloc(1)); err == nil {
		t.Fatal("joined an unknown network")
	}
	if _, _, err := s.Join(ctx, "n1", "d_missing", t0, alloc(50)); err == nil {
		t.Fatal("joined with an unknown device")
	}
}

// UserMemberships: every membership in one user's networks (of their
// devices), none of another user's, in device then join order; "" all.
func testUserMemberships(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	n3 := addNetwork(t, s, "u2", "n3", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	addDevice(t, s, "u1", "b")
	addDevice(t, s, "u1", "c") // in no network
	addDevice(t, s, "u2", "x")
	for _, j := range []struct {
		n   control.Network
		dev string
		at  time.Duration
	}{{n2, "b", 1}, {n1, "b", 2}, {n1, "a", 3}, {n3, "x", 4}} {
		_, _, err := s.Join(ctx, j.n.ID, j.dev, at(j.at*time.Second), func(used []uint32) (uint32, error) { return ipam.Allocate(j.n.Range, used) })
		must(t, err)
	}
	must(t, s.SetExitEnabled(ctx, "n1", "a", true))
	must(t, s.SelectExitNode(ctx, "n1", "b", "a"))

	got, err := s.UserMemberships(ctx, "u1")
	must(t, err)
	var pairs []string
	for _, m := range got {
		pairs = append(pairs, m.DeviceID+"@"+m.NetworkID)
	}
	if want := []string{"a@n1", "b@n2", "b@n1"}; !slices.Equal(pairs, want) {
		t.Fatalf("UserMemberships(u1) = %v, want %v", pairs, want)
	}
	if !got[0].IsExitNode || got[0].Host != 2 || got[2].ExitNodeID != "a" || got[1].ExitNodeID != "" || !got[1].JoinedAt.Equal(at(time.Second)) {
		t.Fatalf("UserMemberships(u1) = %+v", got)
	}
	all, err := s.UserMemberships(ctx, "")
	must(t, err)
	if len(all) != 4 {
		t.Fatalf("UserMemberships(\"\") = %+v, want all 4", all)
	}
	none, err := s.UserMemberships(ctx, "u_unknown")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("UserMemberships(unknown) = %+v", none)
	}
}

func testJoinConcurrent(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	const count = 20
	for i := range count {
		addDevice(t, s, "u1", fmt.Sprintf("d%02d", i))
	}
	e := epoch(t, s)
	ms := make([]control.Membership, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range count {
		wg.Go(func() {
			<-start
			ms[i], _, errs[i] = s.Join(ctx, n.ID, fmt.Sprintf("d%02d", i), t0, func(used []uint32) (uint32, error) {
				return ipam.Allocate(n.Range, used)
			})
		})
	}
	close(start)
	wg.Wait()
	var hosts []uint32
	for i := range count {
		if errs[i] != nil {
			t.Fatalf("concurrent join %d: %v", i, errs[i])
		}
		hosts = append(hosts, ms[i].Host)
	}
	slices.Sort(hosts)
	for i, h := range hosts {
		if h != uint32(i+1) {
			t.Fatalf("hosts = %v, want 1..%d each once", hosts, count)
		}
	}
	members, err := s.Members(ctx, n.ID)
	must(t, err)
	if len(members) != count {
		t.Fatalf("%d members stored, want %d", len(members), count)
	}
	if got := epoch(t, s); got < e+count {
		t.Fatalf("epoch %d after %d joins from %d", got, count, e)
	}
}

func testLeaveFreesHost(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/30") // two hosts
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	if h := join(t, s, n, "a").Host; h != 1 {
		t.Fatalf("a host %d", h)
	}
	if h := join(t, s, n, "b").Host; h != 2 {
		t.Fatalf("b host %d", h)
	}
	_, _, err := s.Join(ctx, n.ID, "c", t0, func(used []uint32) (uint32, error) { return ipam.Allocate(n.Range, used) })
	wantErr(t, err, ipam.ErrExhausted)

	e := epoch(t, s)
	must(t, s.Leave(ctx, n.ID, "a", "v1:rotated"))
	if epoch(t, s) <= e {
		t.Fatal("epoch did not advance on Leave")
	}
	if got, err := s.NetworkByID(ctx, n.ID); err != nil || got.SecretSealed != "v1:rotated" || got.SecretVersion != 2 {
		t.Fatalf("after Leave: sealed %q version %d (%v), want the new secret, version 2", got.SecretSealed, got.SecretVersion, err)
	}
	_, err = s.Membership(ctx, n.ID, "a")
	wantErr(t, err, control.ErrNotFound)
	if h := join(t, s, n, "c").Host; h != 1 {
		t.Fatalf("c got host %d, want the freed 1", h)
	}
	wantErr(t, s.Leave(ctx, n.ID, "a", "v1:again"), control.ErrNotFound)
	wantErr(t, s.Leave(ctx, "n_missing", "b", "v1:again"), control.ErrNotFound)
	if got, _ := s.NetworkByID(ctx, n.ID); got.SecretSealed != "v1:rotated" || got.SecretVersion != 2 {
		t.Fatalf("a failed Leave rotated the secret: %q %d", got.SecretSealed, got.SecretVersion)
	}
}

func testSetExitEnabled(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	addDevice(t, s, "u1", "b")
	join(t, s, n, "a")
	join(t, s, n, "b")

	e := epoch(t, s)
	must(t, s.SetExitEnabled(ctx, "n1", "a", true))
	if !membership(t, s, "n1", "a").IsExitNode {
		t.Fatal("exit not enabled")
	}
	if membership(t, s, "n1", "b").IsExitNode {
		t.Fatal("other member enabled too")
	}
	e2 := epoch(t, s)
	if e2 <= e {
		t.Fatal("epoch did not advance on SetExitEnabled")
	}
	must(t, s.SetExitEnabled(ctx, "n1", "a", false))
	if membership(t, s, "n1", "a").IsExitNode {
		t.Fatal("exit not disabled")
	}
	if epoch(t, s) <= e2 {
		t.Fatal("epoch did not advance on SetExitEnabled(false)")
	}
	wantErr(t, s.SetExitEnabled(ctx, "n1", "zz", true), control.ErrNotFound)
	wantErr(t, s.SetExitEnabled(ctx, "n_missing", "a", true), control.ErrNotFound)
}

func testSelectExitNode(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	join(t, s, n1, "a")
	join(t, s, n1, "b")
	join(t, s, n2, "c") // c is not in n1

	// The exit must be a member of the same network.
	wantErr(t, s.SelectExitNode(ctx, "n1", "a", "c"), control.ErrNotFound)
	wantErr(t, s.SelectExitNode(ctx, "n1", "a", "d_missing"), control.ErrNotFound)
	// The selecting device must be a member.
	wantErr(t, s.SelectExitNode(ctx, "n1", "c", "b"), control.ErrNotFound)
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "" {
		t.Fatalf("failed select left %q", m.ExitNodeID)
	}

	e := epoch(t, s)
	must(t, s.SelectExitNode(ctx, "n1", "a", "b"))
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "b" {
		t.Fatalf("ExitNodeID = %q, want b", m.ExitNodeID)
	}
	if m := membership(t, s, "n1", "b"); m.ExitNodeID != "" {
		t.Fatalf("b's selection changed: %q", m.ExitNodeID)
	}
	e2 := epoch(t, s)
	if e2 <= e {
		t.Fatal("epoch did not advance on SelectExitNode")
	}
	must(t, s.SelectExitNode(ctx, "n1", "a", ""))
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "" {
		t.Fatalf("ExitNodeID = %q after clearing", m.ExitNodeID)
	}
	if epoch(t, s) <= e2 {
		t.Fatal("epoch did not advance on clearing the exit node")
	}
	// Clearing for a non-member is still not found.
	wantErr(t, s.SelectExitNode(ctx, "n1", "c", ""), control.ErrNotFound)
}

func testExitRoutes(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	n3 := addNetwork(t, s, "u1", "n3", "100.66.3.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	for _, n := range []control.Network{n1, n2, n3} {
		join(t, s, n, "c") // c first: host 1 everywhere
		join(t, s, n, "a")
		join(t, s, n, "b")
	}
	routes, err := s.ExitRoutes(ctx, "a")
	must(t, err)
	if len(routes) != 0 {
		t.Fatalf("ExitRoutes without selection = %+v", routes)
	}
	must(t, s.SetExitEnabled(ctx, "n1", "b", true))
	must(t, s.SelectExitNode(ctx, "n1", "a", "b"))
	must(t, s.SelectExitNode(ctx, "n2", "a", "c")) // selected but not enabled by the admin
	must(t, s.SelectExitNode(ctx, "n1", "b", "c")) // another device's selection

	routes, err = s.ExitRoutes(ctx, "a")
	must(t, err)
	slices.SortFunc(routes, func(x, y control.ExitRoute) int { return x.Range.Addr().Compare(y.Range.Addr()) })
	want := []control.ExitRoute{
		{NetworkID: "n1", ExitDeviceID: "b", ExitHost: membership(t, s, "n1", "b").Host, ExitEnabled: true, Range: n1.Range},
		{NetworkID: "n2", ExitDeviceID: "c", ExitHost: membership(t, s, "n2", "c").Host, ExitEnabled: false, Range: n2.Range},
	}
	if !slices.Equal(routes, want) {
		t.Fatalf("ExitRoutes(a) = %+v\nwant %+v", routes, want)
	}
	routes, err = s.ExitRoutes(ctx, "b")
	must(t, err)
	if len(routes) != 1 || routes[0].ExitDeviceID != "c" || routes[0].ExitHost != 1 || routes[0].NetworkID != "n1" {
		t.Fatalf("ExitRoutes(b) = %+v", routes)
	}
	routes, err = s.ExitRoutes(ctx, "unknown")
	must(t, err)
	if len(routes) != 0 {
		t.Fatalf("ExitRoutes(unknown) = %+v", routes)
	}
	// Memberships answers ExitRoutes and SecretVersions in one query.
	for _, dev := range []string{"a", "b", "c", "unknown"} {
		wantRoutes, err := s.ExitRoutes(ctx, dev)
		must(t, err)
		wantVersions, err := s.SecretVersions(ctx, dev)
		must(t, err)
		gotRoutes, gotVersions, err := s.Memberships(ctx, dev)
		must(t, err)
		if !slices.Equal(gotRoutes, wantRoutes) || !slices.Equal(gotVersions, wantVersions) {
			t.Fatalf("Memberships(%s) = %+v, %+v\nwant %+v, %+v", dev, gotRoutes, gotVersions, wantRoutes, wantVersions)
		}
		if dev != "unknown" && len(gotVersions) != 3 {
			t.Fatalf("Memberships(%s) versions = %+v, want the 3 networks", dev, gotVersions)
		}
	}
}

func testLeaveClearsSelection(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	for _, n := range []control.Network{n1, n2} {
		for _, d := range []string{"a", "b", "c"} {
			join(t, s, n, d)
		}
		must(t, s.SelectExitNode(ctx, n.ID, "a", "b"))
		must(t, s.SelectExitNode(ctx, n.ID, "c", "b"))
	}
	must(t, s.Leave(ctx, "n1", "b", ""))
	for _, d := range []string{"a", "c"} {
		if m := membership(t, s, "n1", d); m.ExitNodeID != "" {
			t.Fatalf("n1/%s still selects the leaver: %q", d, m.ExitNodeID)
		}
		if m := membership(t, s, "n2", d); m.ExitNodeID != "b" {
			t.Fatalf("n2/%s selection changed by leaving n1: %q", d, m.ExitNodeID)
		}
	}
	routes, err := s.ExitRoutes(ctx, "a")
	must(t, err)
	if len(routes) != 1 || routes[0].NetworkID != "n2" {
		t.Fatalf("ExitRoutes(a) = %+v, want only n2", routes)
	}
}

// A selection made while its exit node leaves (or is deleted) concurrently
// must not survive pointing at a non-member.
func testSelectLeaveRace(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	join(t, s, n, "a")
	for i := range 60 {
		b := fmt.Sprintf("b%02d", i)
		addDevice(t, s, "u1", b)
		join(t, s, n, b)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; _ = s.SelectExitNode(ctx, n.ID, "a", b) })
		if i%2 == 0 {
			wg.Go(func() { <-start; _ = s.Leave(ctx, n.ID, b, "") })
		} else {
			wg.Go(func() { <-start; _ = s.DeleteDevice(ctx, b, noRotate) })
		}
		close(start)
		wg.Wait()
		if m := membership(t, s, n.ID, "a"); m.ExitNodeID != "" {
			if _, err := s.Membership(ctx, n.ID, m.ExitNodeID); err != nil {
				t.Fatalf("round %d: a selects %q, which is no member: %v", i, m.ExitNodeID, err)
			}
			must(t, s.SelectExitNode(ctx, n.ID, "a", ""))
		}
	}
}
