package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 2. devices ----

func TestRegisterDevice(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(apiFreePlan(2, 3)))
	_, c := f.user("")
	tok := apiToken(c)
	reg := func(body any) apiResp { return f.do("POST", "/api/v2/devices", tok, body) }

	r := reg(wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-1", Platform: "Linux"})
	r.wantStatus(t, http.StatusCreated)
	var d1 wire.Device
	r.decode(t, &d1)
	if d1.ID == "" || d1.Name != "robot" || d1.HardwareUUID != "hw-1" || d1.Platform != "linux" || d1.Online || d1.LastSeen != nil {
		t.Fatalf("registered device = %+v", d1)
	}

	r = reg(wire.RegisterDeviceRequest{Name: "robot-renamed", HardwareUUID: "hw-1", Platform: "linux"})
	r.wantStatus(t, http.StatusOK)
	var again wire.Device
	r.decode(t, &again)
	if again.ID != d1.ID || again.Name != "robot-renamed" {
		t.Fatalf("re-register = %+v, want id %s renamed", again, d1.ID)
	}

	// hardware_id alias
	r = reg(map[string]string{"name": "alias", "hardware_id": "hw-2", "platform": "macos"})
	r.wantStatus(t, http.StatusCreated)
	var d2 wire.Device
	r.decode(t, &d2)
	if d2.HardwareUUID != "hw-2" || d2.ID == d1.ID {
		t.Fatalf("alias registration = %+v", d2)
	}

	// At the plan limit (2): a new device is refused, known ones are not.
	reg(wire.RegisterDeviceRequest{Name: "third", HardwareUUID: "hw-3"}).wantError(t, http.StatusBadRequest, "limit_reached")
	_, err := c.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{HardwareUUID: "hw-4"})
	apiWantErr(t, err, http.StatusBadRequest, "limit_reached")
	for _, body := range []any{
		wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-1"},
		map[string]string{"hardware_id": "hw-2"},
	} {
		r := reg(body)
		r.wantStatus(t, http.StatusOK)
		var d wire.Device
		r.decode(t, &d)
		if d.ID != d1.ID && d.ID != d2.ID {
			t.Fatalf("re-register at limit returned a new device %+v", d)
		}
	}
	me, err := c.Me(f.ctx)
	apiOK(t, err)
	if me.Usage.Devices != 2 || me.Limits.MaxDevices != 2 {
		t.Errorf("me = %+v, want 2 devices of 2", me)
	}

	// Other users have their own namespace of hardware ids.
	_, c2 := f.user("")
	r = f.do("POST", "/api/v2/devices", apiToken(c2), wire.RegisterDeviceRequest{HardwareUUID: "hw-1"})
	r.wantStatus(t, http.StatusCreated)
	var foreign wire.Device
	r.decode(t, &foreign)
	if foreign.ID == d1.ID || foreign.Name != "hw-1" {
		t.Errorf("other user's device = %+v (name should default to the hardware id)", foreign)
	}
}

func TestRegisterDeviceInvalid(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	long := strings.Repeat("n", 129)
	for name, req := range map[string]wire.RegisterDeviceRequest{
		"empty hardware_uuid":  {Name: "x"},
		"blank hardware_uuid":  {Name: "x", HardwareUUID: "   "},
		"spaces in hw":         {Name: "x", HardwareUUID: "a b"},
		"hw too long":          {Name: "x", HardwareUUID: strings.Repeat("h", 129)},
		"name too long":        {Name: long, HardwareUUID: "hw"},
		"control char in name": {Name: "a\x01b", HardwareUUID: "hw"},
		"platform too long":    {Name: "x", HardwareUUID: "hw", Platform: strings.Repeat("p", 33)},
	} {
		t.Run(name, func(t *testing.T) {
			f := f.in(t)
			r := f.do("POST", "/api/v2/devices", apiToken(c), req)
			r.wantError(t, http.StatusBadRequest, "invalid_request")
		})
	}
	devs, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(devs) != 0 {
		t.Errorf("invalid registrations created devices: %+v", devs)
	}
}

func TestDeviceCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	a, b := f.register(c, "a"), f.register(c, "b")

	list, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(list) != 2 {
		t.Fatalf("devices = %+v, want 2", list)
	}
	got := f.device(c, a.ID)
	if got.ID != a.ID || got.HardwareUUID != "a" || got.Name != "dev-a" {
		t.Fatalf("get = %+v", got)
	}

	renamed, err := c.RenameDevice(f.ctx, a.ID, "  kitchen  ")
	apiOK(t, err)
	if renamed.Name != "kitchen" || f.device(c, a.ID).Name != "kitchen" {
		t.Fatalf("rename: %+v", renamed)
	}
	// PATCH is an alias of PUT.
	f.do("PATCH", "/api/v2/devices/"+a.ID, apiToken(c), `{"name":"patched"}`).wantStatus(t, http.StatusOK)
	if n := f.device(c, a.ID).Name; n != "patched" {
		t.Fatalf("name after PATCH = %q", n)
	}
	for _, bad := range []string{"", "  ", strings.Repeat("x", 129), "tab\tname"} {
		_, err := c.RenameDevice(f.ctx, a.ID, bad)
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}

	f.do("DELETE", "/api/v2/devices/"+b.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	_, err = c.Device(f.ctx, b.ID)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
	list, err = c.Devices(f.ctx)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("devices after delete = %+v", list)
	}

	t.Run("unknown", func(t *testing.T) {
		f := f.in(t)
		for _, r := range []apiResp{
			f.do("GET", "/api/v2/devices/dev_nope", apiToken(c), nil),
			f.do("PUT", "/api/v2/devices/dev_nope", apiToken(c), `{"name":"x"}`),
			f.do("DELETE", "/api/v2/devices/dev_nope", apiToken(c), nil),
			f.do("DELETE", "/api/v2/devices/"+b.ID, apiToken(c), nil),
		} {
			r.wantError(t, http.StatusNotFound, "not_found")
		}
	})
}

func TestDeviceOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	bobs := f.register(bob, "bob-hw")
	aliceNet := f.network(alice, "alice-net", "")
	bobNet := f.network(bob, "bob-net", "")
	alices := f.register(alice, "alice-hw")

	tok := apiToken(alice)
	for name, r := range map[string]apiResp{
		"get":                 f.do("GET", "/api/v2/devices/"+bobs.ID, tok, nil),
		"rename":              f.do("PUT", "/api/v2/devices/"+bobs.ID, tok, `{"name":"mine"}`),
		"delete":              f.do("DELETE", "/api/v2/devices/"+bobs.ID, tok, nil),
		"join to own network": f.do("POST", "/api/v2/virtual-networks/"+aliceNet.ID+"/devices/"+bobs.ID, tok, nil),
		"join to his network": f.do("POST", "/api/v2/virtual-networks/"+bobNet.ID+"/devices/"+alices.ID, tok, nil),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	// Nothing changed for bob.
	d := f.device(bob, bobs.ID)
	if d.Name != "dev-bob-hw" || len(d.VirtualNetworks) != 0 {
		t.Fatalf("bob's device changed: %+v", d)
	}
	// A heartbeat only finds the caller's own devices.
	_, err := alice.Heartbeat(f.ctx, "bob-hw", false)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
}

// The devices list carries each device's memberships with the network's
// name and the device's addresses there: the dashboard's devices page
// needs no call per network.
func TestListDevicesWithNetworks(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig())
	_, c := f.user("")
	home, lab := f.network(c, "home", "100.70.1.0/24"), f.network(c, "lab", "100.70.2.0/24")
	a, b, idle := f.register(c, "hw-a"), f.register(c, "hw-b"), f.register(c, "hw-idle")
	ja, jb := f.join(c, home.ID, a.ID), f.join(c, home.ID, b.ID)
	f.env.Clock.Advance(time.Second) // a's networks are listed in join order
	jl := f.join(c, lab.ID, a.ID)
	yes := true
	f.updateMember(c, home.ID, a.ID, wire.UpdateMemberRequest{IsExitNode: &yes})
	f.updateMember(c, home.ID, b.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(a.ID)})
	// Another user's network and device stay out of it.
	_, other := f.user("")
	on := f.network(other, "theirs", "100.70.1.0/24")
	od := f.register(other, "hw-theirs")
	f.join(other, on.ID, od.ID)

	r := f.do("GET", "/api/v2/devices", apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)
	var raw []map[string]any
	r.decode(t, &raw)
	for _, d := range raw {
		if _, ok := d["virtual_networks"].([]any); !ok {
			t.Fatalf("device without a virtual_networks list: %v", d)
		}
	}
	var devs []wire.Device
	r.decode(t, &devs)
	byID := map[string]wire.Device{}
	for _, d := range devs {
		byID[d.ID] = d
	}
	if len(devs) != 3 {
		t.Fatalf("devices = %+v, want the user's 3", devs)
	}
	want := map[string][]wire.DeviceNetwork{
		a.ID: {
			{NetworkID: home.ID, NetworkName: "home", VirtualIP: ja.VirtualIP, VirtualIPv6: ja.VirtualIPv6, IsExitNode: true},
			{NetworkID: lab.ID, NetworkName: "lab", VirtualIP: jl.VirtualIP, VirtualIPv6: jl.VirtualIPv6},
		},
		b.ID:    {{NetworkID: home.ID, NetworkName: "home", VirtualIP: jb.VirtualIP, VirtualIPv6: jb.VirtualIPv6, ExitNode: &a.ID}},
		idle.ID: {},
	}
	for id, w := range want {
		got := byID[id].VirtualNetworks
		if len(got) != len(w) {
			t.Fatalf("device %s networks = %+v, want %+v", id, got, w)
		}
		for i := range w {
			g := got[i]
			if g.NetworkID != w[i].NetworkID || g.NetworkName != w[i].NetworkName || g.VirtualIP != w[i].VirtualIP ||
				g.VirtualIPv6 != w[i].VirtualIPv6 || g.IsExitNode != w[i].IsExitNode || (g.ExitNode == nil) != (w[i].ExitNode == nil) ||
				(g.ExitNode != nil && *g.ExitNode != *w[i].ExitNode) {
				t.Errorf("device %s network %d = %+v, want %+v", id, i, g, w[i])
			}
		}
	}
	// One device's answer names its networks too.
	if d := f.device(c, b.ID); len(d.VirtualNetworks) != 1 || d.VirtualNetworks[0].NetworkName != "home" {
		t.Errorf("GET device = %+v", d.VirtualNetworks)
	}
}
