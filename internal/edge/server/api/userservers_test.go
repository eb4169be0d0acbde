package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 5. user servers ----

func TestUserServerCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")

	r := f.do("POST", "/api/v2/user-servers", apiToken(c), wire.UserServerRequest{Name: "My Home Lab", Host: "nucleus.example.com:51820", Country: "us"})
	r.wantStatus(t, http.StatusCreated)
	var s wire.UserServer
	r.decode(t, &s)
	if s.ID == "" || s.Name != "My Home Lab" || s.Host != "nucleus.example.com:51820" || s.Country != "US" {
		t.Fatalf("created = %+v", s)
	}

	list, err := c.UserServers(f.ctx)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != s.ID || list[0].Country != "US" {
		t.Fatalf("list = %+v", list)
	}
	r = f.do("GET", "/api/v2/user-servers/"+s.ID, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)

	f.env.Clock.Advance(time.Minute)
	upd, err := c.UpdateUserServer(f.ctx, s.ID, wire.UserServerRequest{Name: "Updated Name", Host: "new-nucleus.example.com:51820", Country: "US"})
	apiOK(t, err)
	if upd.Name != "Updated Name" || upd.Host != "new-nucleus.example.com:51820" || !upd.UpdatedAt.After(s.UpdatedAt) {
		t.Fatalf("updated = %+v", upd)
	}
	f.do("PATCH", "/api/v2/user-servers/"+s.ID, apiToken(c), `{"name":"P","host":"1.2.3.4:1","country":"fr"}`).wantStatus(t, http.StatusOK)

	f.do("DELETE", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	f.do("GET", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("PUT", "/api/v2/user-servers/"+s.ID, apiToken(c), wire.UserServerRequest{Name: "x", Host: "a.b:1", Country: "US"}).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("DELETE", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestServedNetworks(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	srv := f.userServer(c, "Home", "nucleus.example.com:51820", "US")
	served, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "served", ServerID: srv.ID})
	apiOK(t, err)
	f.network(c, "builtin", "") // on the built-in nucleus: not listed
	d := f.register(c, "hw-served")
	j := f.join(c, served.ID, d.ID)

	list, err := c.ServedNetworks(f.ctx, srv.ID)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != served.ID || list[0].Name != "served" || list[0].SecretKey != j.SecretKey {
		t.Fatalf("served = %+v", list)
	}
	if m := list[0].Members; len(m) != 1 || m[0].DeviceID != d.ID || m[0].VirtualIP != j.VirtualIP || m[0].VirtualIPv6 != j.VirtualIPv6 {
		t.Fatalf("members = %+v, join %+v", m, j)
	}

	other := f.userServer(c, "Other", "other.example.com:51820", "US")
	empty, err := c.ServedNetworks(f.ctx, other.ID)
	apiOK(t, err)
	f.do("GET", "/api/v2/user-servers/"+other.ID+"/networks", apiToken(c), nil).wantStatus(t, http.StatusOK)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("server without networks: %#v", empty)
	}

	_, stranger := f.user("")
	f.do("GET", "/api/v2/user-servers/"+srv.ID+"/networks", apiToken(stranger), nil).wantError(t, http.StatusForbidden, "forbidden")
	f.do("GET", "/api/v2/user-servers/srv_nope/networks", apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("GET", "/api/v2/user-servers/"+srv.ID+"/networks", "", nil).wantError(t, http.StatusUnauthorized, "unauthorized")

	apiOK(t, c.Leave(f.ctx, served.ID, d.ID))
	list, err = c.ServedNetworks(f.ctx, srv.ID)
	apiOK(t, err)
	if len(list) != 1 || len(list[0].Members) != 0 {
		t.Fatalf("after leave: %+v", list)
	}
}

func TestUserServerValidation(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	existing := f.userServer(c, "ok", "ok.example.com:1", "US")
	good := wire.UserServerRequest{Name: "n", Host: "nucleus.example.com:51820", Country: "US"}
	with := func(mod func(*wire.UserServerRequest)) wire.UserServerRequest {
		r := good
		mod(&r)
		return r
	}
	for name, req := range map[string]wire.UserServerRequest{
		"host without port":  with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com" }),
		"port only":          with(func(r *wire.UserServerRequest) { r.Host = ":51820" }),
		"port 0":             with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:0" }),
		"port 70000":         with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:70000" }),
		"port not a number":  with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:http" }),
		"host with spaces":   with(func(r *wire.UserServerRequest) { r.Host = "nucleus example.com:51820" }),
		"host with scheme":   with(func(r *wire.UserServerRequest) { r.Host = "https://nucleus.example.com:51820" }),
		"unbracketed ipv6":   with(func(r *wire.UserServerRequest) { r.Host = "2001:db8::1:51820" }),
		"empty host":         with(func(r *wire.UserServerRequest) { r.Host = "" }),
		"country XX":         with(func(r *wire.UserServerRequest) { r.Country = "XX" }),
		"country usa":        with(func(r *wire.UserServerRequest) { r.Country = "usa" }),
		"country empty":      with(func(r *wire.UserServerRequest) { r.Country = "" }),
		"name empty":         with(func(r *wire.UserServerRequest) { r.Name = "" }),
		"name too long":      with(func(r *wire.UserServerRequest) { r.Name = strings.Repeat("n", 129) }),
		"name control chars": with(func(r *wire.UserServerRequest) { r.Name = "a\nb" }),
	} {
		t.Run(name, func(t *testing.T) {
			f := f.in(t)
			f.do("POST", "/api/v2/user-servers", apiToken(c), req).wantError(t, http.StatusBadRequest, "invalid_request")
			f.do("PUT", "/api/v2/user-servers/"+existing.ID, apiToken(c), req).wantError(t, http.StatusBadRequest, "invalid_request")
		})
	}
	got, err := c.UserServers(f.ctx)
	apiOK(t, err)
	if len(got) != 1 || got[0].Host != "ok.example.com:1" || got[0].Name != "ok" {
		t.Fatalf("invalid requests changed the servers: %+v", got)
	}
	for _, host := range []string{"1.2.3.4:65535", "[::1]:1", "a-b.example.com.:51820", "localhost:8"} {
		if _, err := c.CreateUserServer(f.ctx, with(func(r *wire.UserServerRequest) { r.Host = host })); err != nil {
			t.Errorf("host %q rejected: %v", host, err)
		}
	}
}

func TestUserServerOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	s := f.userServer(bob, "bob's", "bob.example.com:51820", "GB")
	aliceNet := f.network(alice, "alice", "")

	tok := apiToken(alice)
	path := "/api/v2/user-servers/" + s.ID
	for name, r := range map[string]apiResp{
		"get":    f.do("GET", path, tok, nil),
		"update": f.do("PUT", path, tok, wire.UserServerRequest{Name: "mine", Host: "a.b:1", Country: "US"}),
		"delete": f.do("DELETE", path, tok, nil),
		"use in network update": f.do("PUT", "/api/v2/virtual-networks/"+aliceNet.ID, tok,
			map[string]string{"server_id": s.ID}),
		"use in network create": f.do("POST", "/api/v2/virtual-networks", tok,
			wire.CreateNetworkRequest{Name: "x", ServerID: s.ID}),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	list, err := alice.UserServers(f.ctx)
	apiOK(t, err)
	if len(list) != 0 {
		t.Errorf("alice lists bob's servers: %+v", list)
	}
	got, err := bob.UserServers(f.ctx)
	apiOK(t, err)
	if len(got) != 1 || got[0].Name != "bob's" {
		t.Errorf("bob's server changed: %+v", got)
	}
}
