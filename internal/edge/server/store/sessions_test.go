package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- login and device sessions ----

func testLoginSessions(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	k := control.SecurityKey{ID: "k1", UserID: "u1", Name: "k", Hash: "h1", CreatedAt: t0}
	must(t, s.CreateSecurityKey(ctx, k))
	browser := control.LoginSession{ID: "fam_b", UserID: "u1", Method: control.MethodBrowser, ClientIP: "203.0.113.7", UserAgent: "ua/1",
		CreatedAt: t0, LastUsedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	keyed := control.LoginSession{ID: "fam_k", UserID: "u1", KeyID: "k1", Method: control.MethodSecurityKey, CreatedAt: t0.Add(time.Second),
		LastUsedAt: t0.Add(time.Second), ExpiresAt: t0.Add(time.Hour)}
	other := control.LoginSession{ID: "fam_o", UserID: "u2", Method: control.MethodBrowser, CreatedAt: t0, LastUsedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	for _, l := range []control.LoginSession{browser, keyed, other} {
		must(t, s.CreateLoginSession(ctx, l))
	}
	wantErr(t, s.CreateLoginSession(ctx, browser), control.ErrConflict)
	got, err := s.LoginSession(ctx, "fam_b")
	must(t, err)
	if got != browser {
		t.Fatalf("LoginSession = %+v, want %+v", got, browser)
	}
	_, err = s.LoginSession(ctx, "nope")
	wantErr(t, err, control.ErrNotFound)

	must(t, s.TouchLoginSession(ctx, "fam_b", t0.Add(time.Minute), t0.Add(2*time.Hour)))
	list, err := s.ListLoginSessions(ctx, "u1", t0.Add(90*time.Minute))
	must(t, err)
	if len(list) != 1 || list[0].ID != "fam_b" || !list[0].LastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("sessions after fam_k expired = %+v", list)
	}
	ids, err := s.KeySessions(ctx, "k1", t0)
	must(t, err)
	if len(ids) != 1 || ids[0] != "fam_k" {
		t.Fatalf("KeySessions = %v", ids)
	}
	// Revoking a family or a key revokes the login sessions.
	must(t, s.RevokeRefreshFamily(ctx, "fam_b", t0.Add(time.Minute)))
	must(t, s.RevokeSecurityKey(ctx, "u1", "k1", t0.Add(time.Minute)))
	list, err = s.ListLoginSessions(ctx, "u1", t0)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("revoked sessions listed: %+v", list)
	}
	if got, _ := s.LoginSession(ctx, "fam_k"); got.RevokedAt.IsZero() {
		t.Fatal("key revocation left its session unrevoked")
	}
	list, err = s.ListLoginSessions(ctx, "u2", t0)
	must(t, err)
	if len(list) != 1 || list[0].ID != "fam_o" {
		t.Fatalf("u2 sessions = %+v", list)
	}
	// The sessions revoked after a time, with their revocation time (what
	// the revocation set is loaded from at start).
	revoked, err := s.RevokedSessions(ctx, t0)
	must(t, err)
	if len(revoked) != 2 || !revoked[0].RevokedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("RevokedSessions = %+v, want fam_b and fam_k", revoked)
	}
	if revoked, err = s.RevokedSessions(ctx, t0.Add(time.Minute)); err != nil || len(revoked) != 0 {
		t.Fatalf("RevokedSessions after the revocations = %+v, %v", revoked, err)
	}
}

func testDeviceSessions(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addDevice(t, s, "u1", "d1")
	addDevice(t, s, "u1", "d2")
	for _, f := range []string{"fam_a", "fam_b", "fam_a"} {
		must(t, s.AddDeviceSession(ctx, "d1", f))
	}
	must(t, s.AddDeviceSession(ctx, "d2", "fam_c"))
	got, err := s.DeviceSessions(ctx, "d1")
	must(t, err)
	if len(got) != 2 || got[0] != "fam_a" || got[1] != "fam_b" {
		t.Fatalf("DeviceSessions = %v", got)
	}
	for _, c := range []struct {
		hw, session string
		want        bool
	}{{"hw-d1", "fam_a", true}, {"hw-d1", "fam_b", true}, {"hw-d1", "fam_c", false}, {"hw-d2", "fam_c", true}, {"hw-d2", "", false}} {
		d, recorded, err := s.DeviceBySession(ctx, "u1", c.hw, c.session)
		must(t, err)
		if d.HardwareUUID != c.hw || recorded != c.want {
			t.Fatalf("DeviceBySession(%s, %q) = %s, %v; want recorded %v", c.hw, c.session, d.HardwareUUID, recorded, c.want)
		}
	}
	if _, _, err := s.DeviceBySession(ctx, "u1", "hw-none", "fam_a"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("DeviceBySession of an unknown device: %v", err)
	}
	must(t, s.DeleteDevice(ctx, "d1", noRotate))
	got, err = s.DeviceSessions(ctx, "d1")
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("sessions of a deleted device = %v", got)
	}
}
