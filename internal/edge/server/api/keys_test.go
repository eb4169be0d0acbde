package api_test

import (
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

const (
	apiKey1 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	apiKey2 = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
)

// Devices register their WireGuard public key (on POST /api/v2/devices or
// on join); it is validated, unique among the user's devices, and shown
// to the owner's clients with the memberships, so that peers accept
// nobody else at the device's address.
func TestDevicePublicKeys(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")
	tok := apiToken(c)
	reg := func(hw, key string) apiResp {
		return f.do("POST", "/api/v2/devices", tok, map[string]string{"name": hw, "hardware_uuid": hw, "platform": "linux", "public_key": key})
	}
	r := reg("hw-a", apiKey1)
	r.wantStatus(t, http.StatusCreated)
	var a wire.Device
	r.decode(t, &a)
	if a.PublicKey != apiKey1 {
		t.Fatalf("device %+v, want its public_key", a)
	}
	for name, bad := range map[string]string{
		"not base64":    "not-a-key",
		"url alphabet":  "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s=",
		"short":         apiKey1[:40] + "==",
		"31 bytes":      "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHw==",
		"all zero":      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"trailing junk": apiKey1 + "AAAA",
	} {
		if r := reg("hw-bad", bad); r.Status != http.StatusBadRequest {
			t.Errorf("%s public_key: %s, want 400", name, r)
		} else {
			apiCheckErrorBody(t, r, "")
		}
	}
	// Another device of the same user cannot take the key; another user can.
	reg("hw-b", apiKey1).wantError(t, http.StatusConflict, "")
	_, other := f.user("pro")
	if r := f.do("POST", "/api/v2/devices", apiToken(other), map[string]string{"name": "x", "hardware_uuid": "hw-x", "public_key": apiKey1}); r.Status != http.StatusCreated {
		t.Fatalf("another user's device with the same key: %s", r)
	}
	// Re-registering with a new key changes it.
	reg("hw-a", apiKey2).wantStatus(t, http.StatusOK)
	if d := f.device(c, a.ID); d.PublicKey != apiKey2 {
		t.Fatalf("key after re-registration %q", d.PublicKey)
	}

	// On join: an optional body sets the key; a bad one is refused.
	b := f.register(c, "hw-b")
	n := f.network(c, "home", "")
	f.do("POST", "/api/v2/virtual-networks/"+n.ID+"/devices/"+b.ID, tok, `{"public_key":"nope"}`).wantError(t, http.StatusBadRequest, "")
	f.do("POST", "/api/v2/virtual-networks/"+n.ID+"/devices/"+b.ID, tok, `{"public_key":`).wantError(t, http.StatusBadRequest, "")
	if _, err := c.JoinWith(f.ctx, n.ID, b.ID, wire.JoinRequest{PublicKey: apiKey1}); err != nil {
		t.Fatal(err)
	}
	jr := f.join(c, n.ID, a.ID) // no body, as the published API sends it
	if jr.SecretVersion != 1 || jr.SecretKey == "" {
		t.Fatalf("join %+v", jr)
	}
	ms, err := c.Members(f.ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, m := range ms {
		keys[m.DeviceID] = m.PublicKey
	}
	if keys[a.ID] != apiKey2 || keys[b.ID] != apiKey1 {
		t.Fatalf("member keys %v", keys)
	}
	// A user-hosted nucleus gets them too.
	srv := f.userServer(c, "lab", "lab.example.com:51820", "DE")
	hosted := f.network(c, "hosted", "")
	if _, err := c.UpdateNetwork(f.ctx, hosted.ID, wire.UpdateNetworkRequest{ServerID: wire.Some(srv.ID)}); err != nil {
		t.Fatal(err)
	}
	f.join(c, hosted.ID, b.ID)
	served, err := c.ServedNetworks(f.ctx, srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(served) != 1 || served[0].SecretVersion != 1 || len(served[0].Members) != 1 || served[0].Members[0].PublicKey != apiKey1 {
		t.Fatalf("served networks %+v", served)
	}
}

// A member that leaves, is removed by the owner, or whose device is
// deleted takes the network's secret with it: the secret rotates, the
// join answer (idempotent for the others) carries the new one with its
// version, and every member's heartbeat reports the version.
func TestMemberRemovalRotatesSecret(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")
	n, other := f.network(c, "home", ""), f.network(c, "other", "")
	var devs []wire.Device
	for _, hw := range []string{"hw-a", "hw-b", "hw-c"} {
		d := f.register(c, hw)
		f.join(c, n.ID, d.ID)
		devs = append(devs, d)
	}
	f.join(c, other.ID, devs[0].ID)
	first := f.join(c, n.ID, devs[0].ID)
	otherFirst := f.join(c, other.ID, devs[0].ID)
	if hb := f.heartbeat(c, "hw-a", false); hb.SecretVersions[n.ID] != 1 || hb.SecretVersions[other.ID] != 1 {
		t.Fatalf("heartbeat secret versions %v", hb.SecretVersions)
	}

	if err := c.Leave(f.ctx, n.ID, devs[1].ID); err != nil {
		t.Fatal(err)
	}
	second := f.join(c, n.ID, devs[0].ID)
	if second.SecretKey == first.SecretKey || second.SecretVersion != 2 {
		t.Fatalf("after a leave: version %d, secret changed %v", second.SecretVersion, second.SecretKey != first.SecretKey)
	}
	if hb := f.heartbeat(c, "hw-a", false); hb.SecretVersions[n.ID] != 2 {
		t.Fatalf("heartbeat secret versions %v after a leave", hb.SecretVersions)
	}
	// Re-joining without a removal changes nothing.
	if again := f.join(c, n.ID, devs[0].ID); again.SecretKey != second.SecretKey || again.SecretVersion != 2 {
		t.Fatal("an idempotent join rotated the secret")
	}

	if err := c.DeleteDevice(f.ctx, devs[2].ID); err != nil {
		t.Fatal(err)
	}
	third := f.join(c, n.ID, devs[0].ID)
	if third.SecretKey == second.SecretKey || third.SecretVersion != 3 {
		t.Fatalf("after a device deletion: version %d", third.SecretVersion)
	}
	// The network the removed devices were not in keeps its secret.
	if o := f.join(c, other.ID, devs[0].ID); o.SecretKey != otherFirst.SecretKey || o.SecretVersion != 1 {
		t.Fatal("an unrelated network's secret rotated")
	}
	if hb := f.heartbeat(c, "hw-a", false); hb.SecretVersions[n.ID] != 3 || hb.SecretVersions[other.ID] != 1 {
		t.Fatalf("heartbeat secret versions %v", hb.SecretVersions)
	}
}

// A member reads its current join answer (the rotated secret) without
// joining: after the owner removes the device the read is a 404 and the
// device stays out of the member list.
func TestMembershipReadDoesNotJoin(t *testing.T) {
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")
	tok := apiToken(c)
	n := f.network(c, "home", "")
	a, b := f.register(c, "hw-a"), f.register(c, "hw-b")
	ja := f.join(c, n.ID, a.ID)
	f.join(c, n.ID, b.ID)
	path := "/api/v2/virtual-networks/" + n.ID + "/devices/"

	r := f.do("GET", path+a.ID, tok, nil)
	r.wantStatus(t, http.StatusOK)
	var got wire.JoinResponse
	r.decode(t, &got)
	if got.SecretKey != ja.SecretKey || got.VirtualIP != ja.VirtualIP || got.SecretVersion != 1 || got.Server.Host == "" || got.NetworkID != n.ID {
		t.Fatalf("membership %+v, join said %+v", got, ja)
	}

	if err := c.Leave(f.ctx, n.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Membership(f.ctx, n.ID, a.ID); err != nil || m.SecretVersion != 2 || m.SecretKey == ja.SecretKey {
		t.Fatalf("after a removal the member reads version %d (%v), want the rotated secret", m.SecretVersion, err)
	}
	f.do("GET", path+b.ID, tok, nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("GET", path+"dev_nope", tok, nil).wantError(t, http.StatusNotFound, "not_found")
	ms, err := c.Members(f.ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.DeviceID == b.ID {
			t.Fatal("reading a membership added the removed device back")
		}
	}
	_, other := f.user("pro")
	f.do("GET", path+a.ID, apiToken(other), nil).wantError(t, http.StatusForbidden, "forbidden")
}
