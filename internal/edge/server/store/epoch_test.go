package store_test

import (
	"errors"
	"testing"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- epoch ----

func testEpoch(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	last := epoch(t, s)
	if last < 1 {
		t.Fatalf("initial epoch %d", last)
	}
	step := func(what string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := epoch(t, s)
		if got <= last {
			t.Fatalf("epoch %d after %s, want > %d", got, what, last)
		}
		last = got
	}
	alloc := func(used []uint32) (uint32, error) { return ipam.Allocate(n.Range, used) }
	step("join a", func() error { _, _, err := s.Join(ctx, n.ID, "a", t0, alloc); return err })
	step("join b", func() error { _, _, err := s.Join(ctx, n.ID, "b", t0, alloc); return err })
	step("join c", func() error { _, _, err := s.Join(ctx, n.ID, "c", t0, alloc); return err })
	step("join c n2", func() error { _, _, err := s.Join(ctx, n2.ID, "c", t0, alloc); return err })
	step("enable exit", func() error { return s.SetExitEnabled(ctx, n.ID, "b", true) })
	step("select exit", func() error { return s.SelectExitNode(ctx, n.ID, "a", "b") })
	step("clear exit", func() error { return s.SelectExitNode(ctx, n.ID, "a", "") })
	step("disable exit", func() error { return s.SetExitEnabled(ctx, n.ID, "b", false) })
	step("leave", func() error { return s.Leave(ctx, n.ID, "b", "") })
	step("delete device", func() error { return s.DeleteDevice(ctx, "c", noRotate) })
	step("delete network", func() error { return s.DeleteNetwork(ctx, n2.ID) })

	// Reads leave it alone.
	_, _ = s.Members(ctx, n.ID)
	_, _ = s.Membership(ctx, n.ID, "a")
	_, _ = s.DeviceMemberships(ctx, "a")
	_, _ = s.ExitRoutes(ctx, "a")
	_, _ = s.ListNetworks(ctx, "")
	_, _ = s.NetworkByID(ctx, n.ID)
	_, _ = s.ListDevices(ctx, "")
	_, _ = s.DeviceByID(ctx, "a")
	_, _ = s.DeviceByHardware(ctx, "u1", "hw-a")
	_, _ = s.ListUsers(ctx)
	_, _ = s.UserByID(ctx, "u1")
	if got := epoch(t, s); got != last {
		t.Fatalf("epoch %d after reads, want %d", got, last)
	}
	// So does an idempotent re-join.
	if _, created, err := s.Join(ctx, n.ID, "a", t0, alloc); err != nil || created {
		t.Fatalf("re-join: %v %v", created, err)
	}
	if got := epoch(t, s); got != last {
		t.Fatalf("epoch %d after idempotent join, want %d", got, last)
	}
}

func testEpochFailure(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	join(t, s, n, "a")
	e := epoch(t, s)
	for what, err := range map[string]error{
		"SetExitEnabled":  s.SetExitEnabled(ctx, n.ID, "zz", true),
		"SelectExitNode":  s.SelectExitNode(ctx, n.ID, "zz", ""),
		"SelectExitNode2": s.SelectExitNode(ctx, n.ID, "a", "zz"),
		"Leave":           s.Leave(ctx, n.ID, "zz", "v1:x"),
		"DeleteDevice":    s.DeleteDevice(ctx, "zz", noRotate),
		"DeleteNetwork":   s.DeleteNetwork(ctx, "zz"),
	} {
		if !errors.Is(err, control.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
	_, _, err := s.Join(ctx, n.ID, "zz", t0, func([]uint32) (uint32, error) { return 0, ipam.ErrExhausted })
	wantErr(t, err, ipam.ErrExhausted)
	if got := epoch(t, s); got != e {
		t.Fatalf("epoch %d after failed writes, want %d", got, e)
	}
}
