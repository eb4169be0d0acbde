package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- device key lifetimes ----

func strp(s string) *string { return &s }

// A network's key_expiry is set with PUT/PATCH and shown on the network
// ("0": off, the default); malformed, negative, too short or too long
// values are a 400 JSON error that changes nothing; another user's
// network is 403.
func TestNetworkKeyExpiry(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok := apiToken(c)
	n := f.network(c, "home", "")
	if n.KeyExpiry != "0" {
		t.Fatalf("a new network's key_expiry = %q, want \"0\" (off)", n.KeyExpiry)
	}
	if m := f.do("GET", "/api/v2/virtual-networks/"+n.ID, tok, nil).object(t); m["key_expiry"] != "0" {
		t.Fatalf("GET network: key_expiry = %v, want \"0\"", m["key_expiry"])
	}
	for _, tc := range []struct{ method, in, want string }{
		{"PUT", "720h", "720h"},
		{"PATCH", "90d", "2160h"},
		{"PATCH", " 36h30m ", "36h30m"},
		{"PUT", "0", "0"},
		{"PATCH", "", "0"},
		{"PUT", "87600h", "87600h"},
	} {
		r := f.do(tc.method, "/api/v2/virtual-networks/"+n.ID, tok, map[string]string{"key_expiry": tc.in})
		r.wantStatus(t, http.StatusOK)
		var got wire.Network
		r.decode(t, &got)
		if got.KeyExpiry != tc.want {
			t.Fatalf("%s key_expiry %q: network says %q, want %q", tc.method, tc.in, got.KeyExpiry, tc.want)
		}
	}
	if _, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{KeyExpiry: strp("720h")}); err != nil {
		t.Fatal(err)
	}
	// Other fields leave it alone.
	if got, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: strp("house")}); err != nil || got.KeyExpiry != "720h" {
		t.Fatalf("rename: %+v %v, want key_expiry kept", got, err)
	}
	list, err := c.Networks(f.ctx)
	apiOK(t, err)
	if len(list) != 1 || list[0].KeyExpiry != "720h" {
		t.Fatalf("listed networks %+v", list)
	}

	for _, body := range []string{
		`{"key_expiry":"abc"}`, `{"key_expiry":"-1h"}`, `{"key_expiry":"-3d"}`, `{"key_expiry":"30m"}`, `{"key_expiry":"59m59s"}`,
		`{"key_expiry":"1h30"}`, `{"key_expiry":"1.5d"}`, `{"key_expiry":"3651d"}`, `{"key_expiry":"100000000000000h"}`,
		`{"key_expiry":"9999999999999999999d"}`,
		`{"key_expiry":3600}`, `{"key_expiry":true}`, `{"key_expiry":["720h"]}`,
	} {
		for _, m := range []string{"PUT", "PATCH"} {
			r := f.do(m, "/api/v2/virtual-networks/"+n.ID, tok, body)
			t.Run(m+" "+body, func(t *testing.T) { r.wantError(t, http.StatusBadRequest, "invalid_request") })
		}
	}
	if got, err := c.Network(f.ctx, n.ID); err != nil || got.KeyExpiry != "720h" || got.Name != "house" {
		t.Fatalf("network after bad input: %+v %v", got, err)
	}

	_, mallory := f.user("")
	f.do("PATCH", "/api/v2/virtual-networks/"+n.ID, apiToken(mallory), `{"key_expiry":"1h"}`).wantError(t, http.StatusForbidden, "forbidden")
}

// The member list shows when each member's key expires in the network and
// whether it has; the heartbeat tells the device, with its key's time, in
// the control plane's clock.
func TestKeyExpiryShownToMembersAndDevice(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	key := wgkey.Key{7}.String()
	d, err := c.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-r", PublicKey: key})
	apiOK(t, err)
	set := f.env.Clock.Now().UTC()
	if d.KeySetAt == nil || !d.KeySetAt.Equal(set) || d.KeyExpiredAt != nil {
		t.Fatalf("registered device key times: set %v, expired %v; want %v and none", d.KeySetAt, d.KeyExpiredAt, set)
	}
	home := f.network(c, "home", "")
	lab := f.network(c, "lab", "")
	f.join(c, home.ID, d.ID)
	f.join(c, lab.ID, d.ID)

	// No lifetime: nothing about expiry anywhere.
	hb := f.heartbeat(c, "hw-r", false)
	if hb.KeySetAt != nil || hb.KeyExpiresAt != nil || hb.KeyExpiredAt != nil {
		t.Fatalf("heartbeat without lifetimes: %+v", hb)
	}
	r := f.do("GET", "/api/v2/virtual-networks/"+home.ID+"/devices", apiToken(c), nil)
	var raw []map[string]any
	r.decode(t, &raw)
	if len(raw) != 1 || raw[0]["key_expired"] != false {
		t.Fatalf("members without a lifetime: %s", r)
	}
	if _, ok := raw[0]["key_expires_at"]; ok {
		t.Fatalf("members without a lifetime carry key_expires_at: %s", r)
	}

	_, err = c.UpdateNetwork(f.ctx, home.ID, wire.UpdateNetworkRequest{KeyExpiry: strp("24h")})
	apiOK(t, err)
	ms, err := c.Members(f.ctx, home.ID)
	apiOK(t, err)
	if len(ms) != 1 || ms[0].KeyExpiresAt == nil || !ms[0].KeyExpiresAt.Equal(set.Add(24*time.Hour)) || ms[0].KeyExpired {
		t.Fatalf("member with a 24h lifetime: %+v", ms)
	}
	f.env.Clock.Advance(time.Hour)
	hb = f.heartbeat(c, "hw-r", false)
	if hb.KeySetAt == nil || !hb.KeySetAt.Equal(set) || len(hb.KeyExpiresAt) != 1 || !hb.KeyExpiresAt[home.ID].Equal(set.Add(24*time.Hour)) ||
		hb.KeyExpiredAt != nil {
		t.Fatalf("heartbeat with home's lifetime: %+v", hb)
	}

	f.env.Clock.Advance(24 * time.Hour)
	ms, err = c.Members(f.ctx, home.ID)
	apiOK(t, err)
	if !ms[0].KeyExpired {
		t.Fatalf("member 25 hours after its key, lifetime 24h: %+v", ms[0])
	}
	ms, err = c.Members(f.ctx, lab.ID)
	apiOK(t, err)
	if ms[0].KeyExpired || ms[0].KeyExpiresAt != nil {
		t.Fatalf("member of a network without a lifetime: %+v", ms[0])
	}
}

// POST /api/v2/devices/{id}/expire expires the device's key at once: the
// member lists say so, the device's own login session is refused, and a
// new key needs a login with a credential made since; another user's
// device is 403, an unknown one 404.
func TestExpireDeviceKeyEndpoint(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, admin := f.user("")
	dev := f.env.Client(u) // the device's own login session
	d, err := dev.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-r", PublicKey: wgkey.Key{7}.String()})
	apiOK(t, err)
	n := f.network(admin, "home", "")
	_, err = dev.Join(f.ctx, n.ID, d.ID)
	apiOK(t, err)
	f.heartbeat(dev, "hw-r", false)
	devToken := apiToken(dev)

	f.env.Clock.Advance(time.Second)
	r := f.do("POST", "/api/v2/devices/"+d.ID+"/expire", apiToken(admin), nil)
	r.wantStatus(t, http.StatusOK)
	var got wire.Device
	r.decode(t, &got)
	now := f.env.Clock.Now().UTC()
	if got.ID != d.ID || got.KeyExpiredAt == nil || !got.KeyExpiredAt.Equal(now) || got.PublicKey != d.PublicKey {
		t.Fatalf("expired device = %+v, want key_expired_at %v", got, now)
	}
	ms, err := admin.Members(f.ctx, n.ID)
	apiOK(t, err)
	if len(ms) != 1 || !ms[0].KeyExpired || ms[0].KeyExpiresAt == nil || !ms[0].KeyExpiresAt.Equal(now) {
		t.Fatalf("member after the expiry: %+v", ms)
	}
	f.do("POST", "/api/v2/devices/heartbeat", devToken, `{"hardware_id":"hw-r"}`).wantError(t, http.StatusUnauthorized, "unauthorized")

	// The owner's session predates the expiry: no new key from it.
	_, err = admin.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{HardwareUUID: "hw-r", PublicKey: wgkey.Key{8}.String()})
	apiWantErr(t, err, http.StatusForbidden, "forbidden")
	// Nor from a new login with the same (older) security key.
	again := f.env.Client(u)
	_, err = again.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{HardwareUUID: "hw-r", PublicKey: wgkey.Key{8}.String()})
	apiWantErr(t, err, http.StatusForbidden, "forbidden")
	_, err = again.JoinWith(f.ctx, n.ID, d.ID, wire.JoinRequest{PublicKey: wgkey.Key{8}.String()})
	apiWantErr(t, err, http.StatusForbidden, "forbidden")

	// Others' and unknown devices.
	_, mallory := f.user("")
	f.do("POST", "/api/v2/devices/"+d.ID+"/expire", apiToken(mallory), nil).wantError(t, http.StatusForbidden, "forbidden")
	f.do("POST", "/api/v2/devices/dev_nope/expire", apiToken(admin), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("GET", "/api/v2/devices/"+d.ID+"/expire", apiToken(admin), nil).wantError(t, http.StatusMethodNotAllowed, "")
	f.do("POST", "/api/v2/devices/"+d.ID+"/expire", "", nil).wantError(t, http.StatusUnauthorized, "unauthorized")
	bare := f.register(admin, "hw-bare")
	f.do("POST", "/api/v2/devices/"+bare.ID+"/expire", apiToken(admin), nil).wantError(t, http.StatusBadRequest, "invalid_request")

	// A security key created after the expiry gives the device a new key.
	f.env.Clock.Advance(time.Second)
	k, err := admin.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "after"})
	apiOK(t, err)
	fresh := client.New(f.env.URL, f.env.Server.Client())
	_, err = fresh.LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)
	newKey := wgkey.Key{8}.String()
	renewed, err := fresh.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{HardwareUUID: "hw-r", PublicKey: newKey})
	apiOK(t, err)
	if renewed.KeyExpiredAt != nil || renewed.PublicKey != newKey || renewed.KeySetAt == nil || !renewed.KeySetAt.Equal(f.env.Clock.Now().UTC()) {
		t.Fatalf("renewed device: %+v", renewed)
	}
	ms, err = fresh.Members(f.ctx, n.ID)
	apiOK(t, err)
	if ms[0].KeyExpired || ms[0].PublicKey != newKey {
		t.Fatalf("member after a new key: %+v", ms[0])
	}
}
