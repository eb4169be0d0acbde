package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- 3. heartbeat ----

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok := apiToken(c)
	window := f.env.Config.OnlineWindow

	f.do("POST", "/api/v2/devices/heartbeat", tok, wire.HeartbeatRequest{HardwareID: "unknown"}).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("POST", "/api/v2/devices/heartbeat", tok, `{"is_exit_node":false}`).
		wantError(t, http.StatusBadRequest, "invalid_request")

	d := f.register(c, "hw-1")
	if got := f.device(c, d.ID); got.Online || got.LastSeen != nil {
		t.Fatalf("device online before any heartbeat: %+v", got)
	}

	f.env.Clock.Advance(1500 * time.Millisecond) // a fractional second to truncate
	r := f.do("POST", "/api/v2/devices/heartbeat", tok, map[string]any{"hardware_uuid": "hw-1", "is_exit_node": false})
	r.wantStatus(t, http.StatusOK)
	body := r.object(t)
	want := f.env.Clock.Now().UTC().Truncate(time.Second)
	if body["message"] != "Heartbeat received" {
		t.Errorf("message = %v", body["message"])
	}
	ls, _ := body["last_seen"].(string)
	if ls != want.Format(time.RFC3339) || !strings.HasSuffix(ls, "Z") {
		t.Errorf("last_seen = %q, want %q", ls, want.Format(time.RFC3339))
	}
	if en, ok := body["exit_nodes"].(map[string]any); !ok || len(en) != 0 {
		t.Errorf("exit_nodes = %#v, want {}", body["exit_nodes"])
	}

	online := func(wantOnline bool) {
		t.Helper()
		got := f.device(c, d.ID)
		list, err := c.Devices(f.ctx)
		apiOK(t, err)
		if got.Online != wantOnline || len(list) != 1 || list[0].Online != wantOnline {
			t.Fatalf("online get=%v list=%+v, want %v (clock %s)", got.Online, list, wantOnline, f.env.Clock.Now())
		}
		if got.LastSeen == nil || !got.LastSeen.Equal(want) || list[0].LastSeen == nil || !list[0].LastSeen.Equal(want) {
			t.Fatalf("last_seen get=%v list=%v, want %v", got.LastSeen, list[0].LastSeen, want)
		}
	}
	online(true)
	f.env.Clock.Advance(window - time.Second)
	online(true)
	f.env.Clock.Advance(time.Second)
	online(false)

	hb := f.heartbeat(c, "hw-1", true)
	want = f.env.Clock.Now().UTC().Truncate(time.Second)
	if hb.LastSeen != want.Format(time.RFC3339) {
		t.Errorf("last_seen = %q, want %q", hb.LastSeen, want.Format(time.RFC3339))
	}
	online(true)
	if !f.device(c, d.ID).ExitNodeConsent {
		t.Error("exit_node_consent not recorded from heartbeat")
	}
}

// apiExitScenario is a network N with a client device A, an exit device E
// (both members) and a device X that is not a member.
type apiExitScenario struct {
	*apiFx
	c       *client.Client
	n       wire.Network
	a, e, x wire.Device
	eIP     string
}

func newAPIExitScenario(f *apiFx) *apiExitScenario {
	f.t.Helper()
	_, c := f.user("")
	s := &apiExitScenario{apiFx: f, c: c, n: f.network(c, "exit-net", "")}
	s.a, s.e, s.x = f.register(c, "a"), f.register(c, "e"), f.register(c, "x")
	f.join(c, s.n.ID, s.a.ID)
	s.eIP = f.join(c, s.n.ID, s.e.ID).VirtualIP
	return s
}

// exitNodes is A's heartbeat answer.
func (s *apiExitScenario) exitNodes() map[string]string {
	s.t.Helper()
	return s.heartbeat(s.c, "a", false).ExitNodes
}

func (s *apiExitScenario) wantExit(present bool) {
	s.t.Helper()
	got := s.exitNodes()
	switch {
	case present && (len(got) != 1 || got[s.n.ID] != s.eIP):
		s.t.Fatalf("exit_nodes = %v, want {%s: %s}", got, s.n.ID, s.eIP)
	case !present && len(got) != 0:
		s.t.Fatalf("exit_nodes = %v, want {}", got)
	}
}

func (s *apiExitScenario) selectExit(v wire.NullableString) wire.DeviceNetwork {
	s.t.Helper()
	return s.updateMember(s.c, s.n.ID, s.a.ID, wire.UpdateMemberRequest{ExitNode: v})
}

func (s *apiExitScenario) enableExit(on bool) wire.DeviceNetwork {
	s.t.Helper()
	return s.updateMember(s.c, s.n.ID, s.e.ID, wire.UpdateMemberRequest{IsExitNode: &on})
}

// in returns s reporting to t (for subtests).
func (s *apiExitScenario) in(t *testing.T) *apiExitScenario {
	c := *s
	c.apiFx = s.apiFx.in(t)
	return &c
}

func TestExitNodeMatrix(t *testing.T) {
	t.Parallel()
	s := newAPIExitScenario(newAPIFx(t, edgetest.Options{}))
	window := s.env.Config.OnlineWindow

	// Every combination of the four conditions; the exit node appears only
	// when all hold.
	for mask := range 16 {
		selected, enabled, consent, online := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0
		name := fmt.Sprintf("selected=%v,enabled=%v,consent=%v,online=%v", selected, enabled, consent, online)
		t.Run(name, func(t *testing.T) {
			s := s.in(t)
			if selected {
				s.selectExit(wire.Some(s.e.ID))
			} else {
				s.selectExit(wire.Null())
			}
			s.enableExit(enabled)
			s.heartbeat(s.c, "e", consent)
			if !online {
				s.env.Clock.Advance(window)
			}
			s.wantExit(selected && enabled && consent && online)
		})
	}
}

func TestExitNodeSelection(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	s := newAPIExitScenario(f)
	window := f.env.Config.OnlineWindow

	m := s.selectExit(wire.Some(s.e.ID))
	if m.ExitNode == nil || *m.ExitNode != s.e.ID || m.NetworkID != s.n.ID {
		t.Fatalf("select response = %+v", m)
	}
	if m := s.enableExit(true); !m.IsExitNode || m.VirtualIP != s.eIP {
		t.Fatalf("enable response = %+v", m)
	}
	s.heartbeat(s.c, "e", true)
	s.wantExit(true)

	t.Run("latest heartbeat governs consent", func(t *testing.T) {
		s := s.in(t)
		s.heartbeat(s.c, "e", false)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
	})
	t.Run("online window", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		s.heartbeat(s.c, "e", true)
		f.env.Clock.Advance(window - time.Second)
		s.wantExit(true)
		f.env.Clock.Advance(time.Second)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
	})
	t.Run("visible in device and members", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		d := f.device(s.c, s.a.ID)
		if len(d.VirtualNetworks) != 1 || d.VirtualNetworks[0].ExitNode == nil || *d.VirtualNetworks[0].ExitNode != s.e.ID {
			t.Fatalf("device A networks = %+v", d.VirtualNetworks)
		}
		ms, err := s.c.Members(f.ctx, s.n.ID)
		apiOK(t, err)
		for _, m := range ms {
			if m.DeviceID == s.e.ID && (!m.IsExitNode || !m.Online) {
				t.Errorf("member E = %+v, want exit node and online", m)
			}
		}
	})
	t.Run("clear with null", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		r := f.do("PUT", "/api/v2/virtual-networks/"+s.n.ID+"/devices/"+s.a.ID, apiToken(s.c), `{"exit_node":null}`)
		r.wantStatus(t, http.StatusOK)
		var m wire.DeviceNetwork
		r.decode(t, &m)
		if m.ExitNode != nil {
			t.Fatalf("exit_node after clear = %v", *m.ExitNode)
		}
		s.wantExit(false)
		s.selectExit(wire.Some(s.e.ID))
		s.wantExit(true)
	})
	t.Run("invalid selections", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		path := "/api/v2/virtual-networks/" + s.n.ID + "/devices/"
		tok := apiToken(s.c)
		for name, r := range map[string]apiResp{
			"non-member":     f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": s.x.ID}),
			"unknown device": f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": "dev_nope"}),
			"itself":         f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": s.a.ID}),
			"empty body {}":  f.do("PUT", path+s.a.ID, tok, `{}`),
		} {
			t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusBadRequest, "invalid_request") })
		}
		f.do("PUT", path+s.x.ID, tok, `{"is_exit_node":true}`).wantError(t, http.StatusNotFound, "not_found")
		s.wantExit(true) // the failed attempts changed nothing
	})
	t.Run("exit node leaves", func(t *testing.T) {
		outer := s
		f, s := f.in(t), s.in(t)
		apiOK(t, s.c.Leave(f.ctx, s.n.ID, s.e.ID))
		s.heartbeat(s.c, "e", true)
		s.wantExit(false)
		d := f.device(s.c, s.a.ID)
		if len(d.VirtualNetworks) != 1 || d.VirtualNetworks[0].ExitNode != nil {
			t.Fatalf("selection not cleared after the exit node left: %+v", d.VirtualNetworks)
		}
		// Rejoining does not restore the old selection.
		s.eIP = f.join(s.c, s.n.ID, s.e.ID).VirtualIP
		outer.eIP = s.eIP
		s.enableExit(true)
		s.heartbeat(s.c, "e", true)
		s.wantExit(false)
	})
	t.Run("exit device deleted", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		s.selectExit(wire.Some(s.e.ID))
		s.wantExit(true)
		apiOK(t, s.c.DeleteDevice(f.ctx, s.e.ID))
		s.wantExit(false)
		if d := f.device(s.c, s.a.ID); d.VirtualNetworks[0].ExitNode != nil {
			t.Fatalf("selection of a deleted device survives: %+v", d.VirtualNetworks)
		}
	})
	t.Run("network deleted", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		apiOK(t, s.c.DeleteNetwork(f.ctx, s.n.ID))
		s.wantExit(false)
		if d := f.device(s.c, s.a.ID); len(d.VirtualNetworks) != 0 {
			t.Fatalf("memberships of a deleted network survive: %+v", d.VirtualNetworks)
		}
	})
}
