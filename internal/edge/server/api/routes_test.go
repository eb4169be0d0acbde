package api_test

import (
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

func (f *apiFx) advertise(c *client.Client, hw string, routes ...string) (wire.Device, error) {
	f.t.Helper()
	rs := append([]string{}, routes...)
	return c.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{Name: "dev-" + hw, HardwareUUID: hw, Platform: "linux", AdvertisedRoutes: &rs})
}

func mapRoutes(t *testing.T, f *apiFx, c *client.Client, vn string) map[string][]string {
	t.Helper()
	m, _, _, err := c.Map(f.ctx, vn, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range m.Peers {
		out[p.DeviceID] = p.Routes
	}
	return out
}

// A route is carried only once the device advertises it and the owner
// approved it; the same prefix on two members goes to the lower address;
// routes inside the network's ranges are refused.
func TestSubnetRoutes(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user(config.PlanFree)
	n := f.network(c, "office", "100.70.0.0/24")
	r1 := f.register(c, "hw-r1")
	f.join(c, n.ID, r1.ID)
	if _, err := f.advertise(c, "hw-r1", "10.1.0.7/24", "fd00:1::/64", "10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	got, err := c.MemberRoutes(f.ctx, n.ID, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Advertised, []string{"10.1.0.0/24", "fd00:1::/64"}) || len(got.Approved) != 0 || len(got.Enabled) != 0 {
		t.Fatalf("advertised, not approved: %+v", got)
	}
	if rs := mapRoutes(t, f, c, n.ID); len(rs[r1.ID]) != 0 {
		t.Fatalf("an unapproved route is in the map: %v", rs)
	}
	got, err = c.ApproveRoutes(f.ctx, n.ID, r1.ID, []string{"10.1.0.0/24", "fd00:1::/64", "192.168.9.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Enabled, []string{"10.1.0.0/24", "fd00:1::/64"}) || !slices.Equal(got.Primary, got.Enabled) {
		t.Fatalf("after approval (one route approved but not advertised): %+v", got)
	}
	if rs := mapRoutes(t, f, c, n.ID); !slices.Equal(rs[r1.ID], []string{"10.1.0.0/24", "fd00:1::/64"}) {
		t.Fatalf("map routes: %v", rs)
	}

	// A second router for the same LAN: approved, but the first (lower
	// address) carries the prefix until it leaves.
	r2 := f.register(c, "hw-r2")
	f.join(c, n.ID, r2.ID)
	if _, err := f.advertise(c, "hw-r2", "10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApproveRoutes(f.ctx, n.ID, r2.ID, []string{"10.1.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if rs := mapRoutes(t, f, c, n.ID); len(rs[r2.ID]) != 0 || !slices.Contains(rs[r1.ID], "10.1.0.0/24") {
		t.Fatalf("two routers for one prefix: %v", rs)
	}
	if err := c.Leave(f.ctx, n.ID, r1.ID); err != nil {
		t.Fatal(err)
	}
	if rs := mapRoutes(t, f, c, n.ID); !slices.Equal(rs[r2.ID], []string{"10.1.0.0/24"}) {
		t.Fatalf("the standby router after the first left: %v", rs)
	}

	// Refusals: inside the network's ranges, default routes, garbage.
	for _, bad := range [][]string{{"100.70.0.0/25"}, {"100.0.0.0/8"}, {"0.0.0.0/0"}, {"::/0"}, {"10.1.0.0"}, {"127.0.0.0/8"}, {"fe80::/64"}, {"224.0.0.0/4"}} {
		if _, err := c.ApproveRoutes(f.ctx, n.ID, r2.ID, bad); client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("approve %v: %v", bad, err)
		}
		if _, err := f.advertise(c, "hw-r2", bad...); client.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("advertise %v: %v", bad, err)
		}
	}
	v6 := n.IPv6Range
	if _, err := f.advertise(c, "hw-r2", v6); client.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("advertise the network's own IPv6 range %s: %v", v6, err)
	}
	many := make([]string, 65)
	for i := range many {
		many[i] = "10.2." + strconv.Itoa(i) + ".0/24"
	}
	if _, err := f.advertise(c, "hw-r2", many...); client.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("65 routes: %v", err)
	}
	if got, _ := c.MemberRoutes(f.ctx, n.ID, r2.ID); !slices.Equal(got.Primary, []string{"10.1.0.0/24"}) {
		t.Fatalf("refused calls changed the routes: %+v", got)
	}
	if _, err := c.ApproveRoutes(f.ctx, n.ID, r1.ID, []string{"10.1.0.0/24"}); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("approving for a device that left: %v", err)
	}

	// Another user can neither read nor approve.
	_, other := f.user(config.PlanFree)
	if _, err := other.MemberRoutes(f.ctx, n.ID, r2.ID); err == nil {
		t.Fatal("another user read the routes")
	}
	if _, err := other.ApproveRoutes(f.ctx, n.ID, r2.ID, []string{"10.9.0.0/24"}); err == nil {
		t.Fatal("another user approved a route")
	}
}
