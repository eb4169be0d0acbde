package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 8. both backends ----

// apiCoreFlow is the life of a client: login, register, network, join,
// heartbeats and exit-node selection, presence, refresh.
func apiCoreFlow(t *testing.T, f *apiFx) {
	u := f.env.NewUser("")
	r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key})
	r.wantStatus(t, http.StatusOK)
	var tr wire.TokenResponse
	r.decode(t, &tr)
	c := f.anon()
	c.SetTokens(tr.Token, tr.RefreshToken)

	r = f.do("POST", "/api/v2/devices", tr.Token, wire.RegisterDeviceRequest{Name: "A", HardwareUUID: "hw-a", Platform: "linux"})
	r.wantStatus(t, http.StatusCreated)
	var a wire.Device
	r.decode(t, &a)
	f.do("POST", "/api/v2/devices", tr.Token, wire.RegisterDeviceRequest{Name: "A", HardwareUUID: "hw-a"}).wantStatus(t, http.StatusOK)
	e := f.register(c, "hw-e")

	n := f.network(c, "core", "100.66.7.0/24")
	ja, je := f.join(c, n.ID, a.ID), f.join(c, n.ID, e.ID)
	if ja.VirtualIP != "100.66.7.1" || je.VirtualIP != "100.66.7.2" || ja.SecretKey == "" || ja.SecretKey != je.SecretKey {
		t.Fatalf("joins = %+v %+v", ja, je)
	}
	if again := f.join(c, n.ID, a.ID); again.VirtualIP != ja.VirtualIP || again.VirtualIPv6 != ja.VirtualIPv6 {
		t.Fatalf("rejoin = %+v", again)
	}

	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 ||
		hb.LastSeen != f.env.Clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Fatalf("first heartbeat = %+v", hb)
	}
	f.heartbeat(c, "hw-e", true)
	on := true
	f.updateMember(c, n.ID, e.ID, wire.UpdateMemberRequest{IsExitNode: &on})
	f.updateMember(c, n.ID, a.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(e.ID)})
	if hb := f.heartbeat(c, "hw-a", false); hb.ExitNodes[n.ID] != je.VirtualIP || len(hb.ExitNodes) != 1 {
		t.Fatalf("exit_nodes = %v, want {%s: %s}", hb.ExitNodes, n.ID, je.VirtualIP)
	}
	ms, err := c.Members(f.ctx, n.ID)
	apiOK(t, err)
	if len(ms) != 2 || !ms[0].Online || !ms[1].Online {
		t.Fatalf("members = %+v, want both online", ms)
	}

	// Presence survives a flush to the store.
	apiOK(t, f.env.Service.Flush(f.ctx))
	if d := f.device(c, e.ID); !d.Online || !d.ExitNodeConsent {
		t.Fatalf("E after flush = %+v", d)
	}

	f.env.Clock.Advance(f.env.Config.OnlineWindow)
	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 {
		t.Fatalf("exit node offline but listed: %v", hb.ExitNodes)
	}
	if d := f.device(c, e.ID); d.Online {
		t.Fatalf("E online after the window: %+v", d)
	}
	f.heartbeat(c, "hw-e", true)
	if hb := f.heartbeat(c, "hw-a", false); hb.ExitNodes[n.ID] != je.VirtualIP {
		t.Fatalf("exit node back online but not listed: %v", hb.ExitNodes)
	}

	// The access token expires; the client refreshes.
	f.env.Clock.Advance(f.env.Config.AccessTokenTTL)
	f.do("GET", "/api/v2/devices", tr.Token, nil).wantError(t, http.StatusUnauthorized, "unauthorized")
	devs, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(devs) != 2 {
		t.Fatalf("devices = %+v", devs)
	}
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: tr.RefreshToken}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
	// The replay revoked the whole family, the client's current access
	// token included; it logs in again.
	f.do("GET", "/api/v2/devices", apiToken(c), nil).wantError(t, http.StatusUnauthorized, "unauthorized")
	_, err = c.LoginSecurityKey(f.ctx, u.Key)
	apiOK(t, err)

	f.updateMember(c, n.ID, a.ID, wire.UpdateMemberRequest{ExitNode: wire.Null()})
	f.heartbeat(c, "hw-e", true)
	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 {
		t.Fatalf("exit_nodes after clear = %v", hb.ExitNodes)
	}
	apiOK(t, c.Leave(f.ctx, n.ID, a.ID))
	apiOK(t, c.DeleteNetwork(f.ctx, n.ID))
}

func TestCoreFlowSQLite(t *testing.T) {
	t.Parallel()
	apiCoreFlow(t, newAPIFx(t, edgetest.Options{}))
}

func TestCoreFlowPostgresRedis(t *testing.T) {
	t.Parallel()
	pgRedis := edgetest.Options{Postgres: true, Redis: true}
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		apiCoreFlow(t, newAPIFx(t, pgRedis))
	})
	t.Run("exit matrix", func(t *testing.T) {
		t.Parallel()
		f := newAPIFx(t, pgRedis)
		s := newAPIExitScenario(f)
		s.selectExit(wire.Some(s.e.ID))
		s.enableExit(true)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
		s.heartbeat(s.c, "e", false)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		f.env.Clock.Advance(f.env.Config.OnlineWindow)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		apiOK(t, s.c.Leave(f.ctx, s.n.ID, s.e.ID))
		s.wantExit(false)
	})
	t.Run("rate limit", func(t *testing.T) {
		t.Parallel()
		apiRateLimitTokenCase(t, pgRedis)
	})
	t.Run("limits and ownership", func(t *testing.T) {
		t.Parallel()
		o := pgRedis
		o.Config = apiFreePlan(1, 1)
		f := newAPIFx(t, o)
		_, c := f.user("")
		d := f.register(c, "one")
		f.do("POST", "/api/v2/devices", apiToken(c), wire.RegisterDeviceRequest{HardwareUUID: "two"}).wantError(t, http.StatusBadRequest, "limit_reached")
		f.do("POST", "/api/v2/devices", apiToken(c), wire.RegisterDeviceRequest{HardwareUUID: "one"}).wantStatus(t, http.StatusOK)
		n := f.network(c, "tiny", "100.66.2.0/30")
		f.do("POST", "/api/v2/virtual-networks", apiToken(c), wire.CreateNetworkRequest{Name: "2"}).wantError(t, http.StatusBadRequest, "limit_reached")
		_, other := f.user("")
		f.do("GET", "/api/v2/virtual-networks/"+n.ID, apiToken(other), nil).wantError(t, http.StatusForbidden, "forbidden")
		f.do("GET", "/api/v2/devices/"+d.ID, apiToken(other), nil).wantError(t, http.StatusForbidden, "forbidden")
		if j := f.join(c, n.ID, d.ID); j.SubnetMask != "255.255.255.252" {
			t.Fatalf("join = %+v", j)
		}
	})
}
