package api_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 4. networks ----

func TestCreateNetworkRanges(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")

	explicit := f.network(c, "explicit", "100.66.1.0/24")
	if explicit.IPRange != "100.66.1.0/24" {
		t.Fatalf("explicit ip_range = %q", explicit.IPRange)
	}
	n1, n2 := f.network(c, "one", ""), f.network(c, "two", "")

	var v4s, v6s []netip.Prefix
	for _, n := range []wire.Network{explicit, n1, n2} {
		p4, err := netip.ParsePrefix(n.IPRange)
		apiOK(t, err)
		p6, err := netip.ParsePrefix(n.IPv6Range)
		apiOK(t, err)
		if !p4.Addr().Is4() || p4.Bits() != 24 || !ipam.CGNAT.Contains(p4.Addr()) || p4 != p4.Masked() {
			t.Errorf("%s: ip_range %s is not a /24 inside 100.64.0.0/10", n.Name, p4)
		}
		if !strings.HasPrefix(n.IPv6Range, "fd") || !p6.Addr().Is6() || p6.Bits() != 120 || p6 != p6.Masked() {
			t.Errorf("%s: ipv6_range %s is not a ULA /120", n.Name, p6)
		}
		if n.SubnetMask != "255.255.255.0" || n.SubnetPrefixV6 != 120 {
			t.Errorf("%s: mask %s /%d", n.Name, n.SubnetMask, n.SubnetPrefixV6)
		}
		for i := range v4s {
			if v4s[i].Overlaps(p4) || v6s[i].Overlaps(p6) {
				t.Errorf("%s: ranges %s %s overlap an earlier network's", n.Name, p4, p6)
			}
		}
		v4s, v6s = append(v4s, p4), append(v6s, p6)
	}

	small := f.network(c, "small", "100.66.200.0/30")
	if small.SubnetMask != "255.255.255.252" || small.SubnetPrefixV6 != 126 || !strings.HasSuffix(small.IPv6Range, "/126") {
		t.Errorf("/30 network = %+v", small)
	}
	if f.network(c, "unmasked", "100.66.201.7/24").IPRange != "100.66.201.0/24" {
		t.Error("explicit range not masked")
	}

	for _, bad := range []string{
		"100.66.1.0/24",   // same
		"100.66.1.128/25", // inside
		"100.66.0.0/16",   // around
		"10.0.0.0/24",     // outside CGNAT
		"100.128.0.0/24",  // just past 100.64.0.0/10
		"192.168.1.0/24",
		"fd00::/120", // IPv6
		"100.66.9.0/31",
		"100.0.0.0/8",
		"100.66.9.0",
		"not-a-range",
	} {
		t.Run(bad, func(t *testing.T) {
			f := f.in(t)
			_, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "bad", IPRange: bad})
			apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
		})
	}
	for _, name := range []string{"", " ", strings.Repeat("n", 129)} {
		_, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: name})
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}
	nets, err := c.Networks(f.ctx)
	apiOK(t, err)
	if len(nets) != 5 {
		t.Errorf("networks = %d, want 5 (invalid requests must not create any)", len(nets))
	}
}

func TestNetworkPlanLimit(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(apiFreePlan(20, 2)))
	_, c := f.user("")
	f.network(c, "a", "")
	f.network(c, "b", "")
	r := f.do("POST", "/api/v2/virtual-networks", apiToken(c), wire.CreateNetworkRequest{Name: "c"})
	r.wantError(t, http.StatusBadRequest, "limit_reached")
	// Deleting one frees a slot.
	nets, err := c.Networks(f.ctx)
	apiOK(t, err)
	apiOK(t, c.DeleteNetwork(f.ctx, nets[0].ID))
	f.network(c, "c", "")
}

func TestNetworkCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "home", "")
	f.network(c, "office", "")

	got, err := c.Network(f.ctx, n.ID)
	apiOK(t, err)
	if got.ID != n.ID || got.Name != "home" || got.IPRange != n.IPRange || got.IPv6Range != n.IPv6Range {
		t.Fatalf("get = %+v, want %+v", got, n)
	}
	list, err := c.Networks(f.ctx)
	apiOK(t, err)
	if len(list) != 2 {
		t.Fatalf("list = %+v", list)
	}

	name := "renamed"
	upd, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: &name})
	apiOK(t, err)
	if upd.Name != "renamed" || upd.IPRange != n.IPRange {
		t.Fatalf("update = %+v", upd)
	}
	if got, _ := c.Network(f.ctx, n.ID); got.Name != "renamed" {
		t.Fatalf("name after update = %q", got.Name)
	}
	empty := ""
	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: &empty})
	apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some("srv_nope")})
	apiWantErr(t, err, http.StatusNotFound, "not_found")

	d := f.register(c, "hw")
	f.join(c, n.ID, d.ID)
	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	_, err = c.Network(f.ctx, n.ID)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
	if dv := f.device(c, d.ID); len(dv.VirtualNetworks) != 0 {
		t.Errorf("device still in deleted network: %+v", dv.VirtualNetworks)
	}

	t.Run("unknown", func(t *testing.T) {
		f := f.in(t)
		tok := apiToken(c)
		base := "/api/v2/virtual-networks/vn_nope"
		for _, r := range []apiResp{
			f.do("GET", base, tok, nil),
			f.do("PUT", base, tok, `{"name":"x"}`),
			f.do("DELETE", base, tok, nil),
			f.do("GET", base+"/devices", tok, nil),
			f.do("POST", base+"/devices/"+d.ID, tok, nil),
			f.do("DELETE", base+"/devices/"+d.ID, tok, nil),
		} {
			r.wantError(t, http.StatusNotFound, "not_found")
		}
	})
}

func TestNetworkOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	bobNet := f.network(bob, "bob", "")
	bobDev := f.register(bob, "bob-hw")
	f.join(bob, bobNet.ID, bobDev.ID)
	aliceDev := f.register(alice, "alice-hw")

	tok := apiToken(alice)
	base := "/api/v2/virtual-networks/" + bobNet.ID
	for name, r := range map[string]apiResp{
		"get":            f.do("GET", base, tok, nil),
		"update":         f.do("PUT", base, tok, `{"name":"mine"}`),
		"delete":         f.do("DELETE", base, tok, nil),
		"members":        f.do("GET", base+"/devices", tok, nil),
		"join":           f.do("POST", base+"/devices/"+aliceDev.ID, tok, nil),
		"leave":          f.do("DELETE", base+"/devices/"+aliceDev.ID, tok, nil),
		"leave his dev":  f.do("DELETE", base+"/devices/"+bobDev.ID, tok, nil),
		"update member":  f.do("PUT", base+"/devices/"+bobDev.ID, tok, `{"is_exit_node":true}`),
		"select as exit": f.do("PUT", base+"/devices/"+aliceDev.ID, tok, `{"exit_node":"`+bobDev.ID+`"}`),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	got, err := bob.Network(f.ctx, bobNet.ID)
	apiOK(t, err)
	ms, err := bob.Members(f.ctx, bobNet.ID)
	apiOK(t, err)
	if got.Name != "bob" || len(ms) != 1 || ms[0].IsExitNode {
		t.Fatalf("bob's network changed: %+v %+v", got, ms)
	}
	list, err := alice.Networks(f.ctx)
	apiOK(t, err)
	if len(list) != 0 {
		t.Errorf("alice lists bob's network: %+v", list)
	}
}

func TestJoinResponse(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "lab", "100.66.1.0/24")
	devs := make([]wire.Device, 5)
	for i := range devs {
		devs[i] = f.register(c, fmt.Sprintf("hw-%d", i+1))
	}
	path := "/api/v2/virtual-networks/" + n.ID + "/devices/" + devs[0].ID

	r := f.do("POST", path, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)
	m := r.object(t)
	for key, kind := range map[string]string{
		"cluster": "string", "secret_key": "string", "virtual_ip": "string", "virtual_ip_v6": "string",
		"subnet_mask": "string", "subnet_prefix_v6": "number", "server": "object",
	} {
		if got := apiJSONKind(m[key]); got != kind {
			t.Errorf("join.%s is %s (%v), want %s", key, got, m[key], kind)
		}
	}
	srv, _ := m["server"].(map[string]any)
	for _, key := range []string{"host", "name"} {
		if s, _ := srv[key].(string); s == "" {
			t.Errorf("join.server.%s = %v, want a non-empty string", key, srv[key])
		}
	}
	if m["cluster"] != "lab" || m["subnet_mask"] != "255.255.255.0" || m["subnet_prefix_v6"] != float64(120) {
		t.Errorf("join = %s", r.Body)
	}
	secret := m["secret_key"].(string)
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(secret, "="))
	if err != nil || len(raw) < 32 {
		t.Errorf("secret_key %q decodes to %d bytes (%v), want >= 32", secret, len(raw), err)
	}

	var first wire.JoinResponse
	r.decode(t, &first)
	again := f.join(c, n.ID, devs[0].ID)
	if again.VirtualIP != first.VirtualIP || again.VirtualIPv6 != first.VirtualIPv6 || again.SecretKey != first.SecretKey {
		t.Errorf("second join = %+v, want %+v", again, first)
	}

	r6 := netip.MustParsePrefix(n.IPv6Range)
	r4 := netip.MustParsePrefix(n.IPRange)
	joins := []wire.JoinResponse{first}
	for _, d := range devs[1:] {
		joins = append(joins, f.join(c, n.ID, d.ID))
	}
	for i, j := range joins {
		want4 := fmt.Sprintf("100.66.1.%d", i+1)
		v4, v6 := netip.MustParseAddr(j.VirtualIP), netip.MustParseAddr(j.VirtualIPv6)
		if j.VirtualIP != want4 {
			t.Errorf("device %d: virtual_ip %s, want %s", i, j.VirtualIP, want4)
		}
		if !r6.Contains(v6) || apiHost6(v6)-apiHost6(r6.Addr()) != apiHost4(r4, v4) {
			t.Errorf("device %d: v6 %s does not mirror v4 %s in %s", i, v6, v4, r6)
		}
		if j.SecretKey != first.SecretKey {
			t.Errorf("device %d: secret differs", i)
		}
	}
	if !strings.HasSuffix(joins[4].VirtualIPv6, "::5") {
		t.Errorf("100.66.1.5 maps to %s, want …::5", joins[4].VirtualIPv6)
	}

	// Another network has another secret.
	other := f.network(c, "other", "")
	if f.join(c, other.ID, devs[0].ID).SecretKey == first.SecretKey {
		t.Error("two networks share a secret")
	}
	// Members list agrees with the join answers.
	ms, err := c.Members(f.ctx, n.ID)
	apiOK(t, err)
	if len(ms) != 5 || ms[0].VirtualIP != first.VirtualIP || ms[0].VirtualIPv6 != first.VirtualIPv6 {
		t.Errorf("members = %+v", ms)
	}
}

func apiJSONKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null/missing"
	}
	return fmt.Sprintf("%T", v)
}

func TestJoinSmallNetwork(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "tiny", "100.66.2.0/30")
	d1, d2, d3 := f.register(c, "1"), f.register(c, "2"), f.register(c, "3")

	if ip := f.join(c, n.ID, d1.ID).VirtualIP; ip != "100.66.2.1" {
		t.Fatalf("first = %s", ip)
	}
	if ip := f.join(c, n.ID, d2.ID).VirtualIP; ip != "100.66.2.2" {
		t.Fatalf("second = %s", ip)
	}
	f.do("POST", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d3.ID, apiToken(c), nil).
		wantError(t, http.StatusBadRequest, "limit_reached")

	r := f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d1.ID, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)
	if msg, _ := r.object(t)["message"].(string); msg == "" {
		t.Errorf("leave response %s has no message", r.Body)
	}
	j3 := f.join(c, n.ID, d3.ID)
	if j3.VirtualIP != "100.66.2.1" || !strings.HasSuffix(j3.VirtualIPv6, "::1") {
		t.Fatalf("freed address not reused: %+v", j3)
	}

	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d1.ID, apiToken(c), nil).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/dev_nope", apiToken(c), nil).
		wantError(t, http.StatusNotFound, "not_found")
}

func TestJoinServer(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "net", "")
	d := f.register(c, "hw")

	u, err := url.Parse(f.env.URL)
	apiOK(t, err)
	builtin := wire.Server{Host: u.Hostname() + ":51820", Name: f.env.Config.NucleusName}
	wantServer := func(want wire.Server) {
		t.Helper()
		j := f.join(c, n.ID, d.ID)
		if j.Server.Host != want.Host || j.Server.Name != want.Name {
			t.Fatalf("join server = %+v, want %+v", j.Server, want)
		}
		got, err := c.Network(f.ctx, n.ID)
		apiOK(t, err)
		if got.Server.Host != want.Host || got.Server.Name != want.Name {
			t.Fatalf("network server = %+v, want %+v", got.Server, want)
		}
	}
	wantServer(builtin)

	srv := f.userServer(c, "US East Server", "nucleus.example.com:51820", "US")
	upd, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some(srv.ID)})
	apiOK(t, err)
	if upd.Server.Host != srv.Host {
		t.Fatalf("update response server = %+v", upd.Server)
	}
	wantServer(wire.Server{Host: "nucleus.example.com:51820", Name: "US East Server"})

	// Edits of the server show in the next join.
	_, err = c.UpdateUserServer(f.ctx, srv.ID, wire.UserServerRequest{Name: "Moved", Host: "10.1.2.3:4000", Country: "de"})
	apiOK(t, err)
	wantServer(wire.Server{Host: "10.1.2.3:4000", Name: "Moved"})

	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Null()})
	apiOK(t, err)
	wantServer(builtin)

	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some(srv.ID)})
	apiOK(t, err)
	apiOK(t, c.DeleteUserServer(f.ctx, srv.ID))
	wantServer(builtin)

	t.Run("create with server_id", func(t *testing.T) {
		f := f.in(t)
		srv := f.userServer(c, "Lab", "[2001:db8::1]:51820", "nl")
		n2, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "with-server", ServerID: srv.ID})
		apiOK(t, err)
		if n2.Server.Host != "[2001:db8::1]:51820" || n2.Server.Name != "Lab" {
			t.Fatalf("server = %+v", n2.Server)
		}
		_, err = c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "x", ServerID: "srv_nope"})
		apiWantErr(t, err, http.StatusNotFound, "not_found")
	})
}
