package store_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- user servers ----

func testUserServers(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	s2 := control.UserServer{ID: "s2", UserID: "u1", Name: "two", Host: "two.example.com:443", Country: "US", CreatedAt: at(2 * time.Second), UpdatedAt: at(2 * time.Second)}
	s1 := control.UserServer{ID: "s1", UserID: "u1", Name: "one", Host: "one.example.com:443", Country: "DE", PublicKey: "nucleus-key-one",
		CreatedAt: at(3 * time.Second), UpdatedAt: at(3 * time.Second)}
	sx := control.UserServer{ID: "sx", UserID: "u2", Name: "x", Host: "x:1", Country: "FR", CreatedAt: t0, UpdatedAt: t0}
	for _, v := range []control.UserServer{s2, s1, sx} {
		must(t, s.CreateUserServer(ctx, v))
	}
	wantErr(t, s.CreateUserServer(ctx, s1), control.ErrConflict)

	got, err := s.UserServer(ctx, "s1")
	must(t, err)
	if got.ID != s1.ID || got.UserID != "u1" || got.Name != "one" || got.Host != s1.Host || got.Country != "DE" || got.PublicKey != s1.PublicKey ||
		!got.CreatedAt.Equal(s1.CreatedAt) || !got.UpdatedAt.Equal(s1.UpdatedAt) {
		t.Fatalf("UserServer = %+v, want %+v", got, s1)
	}
	_, err = s.UserServer(ctx, "missing")
	wantErr(t, err, control.ErrNotFound)

	list, err := s.ListUserServers(ctx, "u1")
	must(t, err)
	if len(list) != 2 || list[0].ID != "s2" || list[1].ID != "s1" {
		t.Fatalf("ListUserServers(u1) = %+v", list)
	}

	upd := s1
	upd.Name, upd.Host, upd.Country, upd.PublicKey, upd.UpdatedAt = "uno", "uno.example.com:8443", "NL", "nucleus-key-uno", at(time.Hour)
	upd.UserID, upd.CreatedAt = "u2", at(time.Hour) // not updatable
	must(t, s.UpdateUserServer(ctx, upd))
	got, _ = s.UserServer(ctx, "s1")
	if got.Name != "uno" || got.Host != "uno.example.com:8443" || got.Country != "NL" || got.PublicKey != "nucleus-key-uno" || !got.UpdatedAt.Equal(at(time.Hour)) ||
		got.UserID != "u1" || !got.CreatedAt.Equal(s1.CreatedAt) {
		t.Fatalf("after update: %+v", got)
	}
	wantErr(t, s.UpdateUserServer(ctx, control.UserServer{ID: "missing"}), control.ErrNotFound)

	must(t, s.DeleteUserServer(ctx, "s1"))
	_, err = s.UserServer(ctx, "s1")
	wantErr(t, err, control.ErrNotFound)
	wantErr(t, s.DeleteUserServer(ctx, "s1"), control.ErrNotFound)
	list, _ = s.ListUserServers(ctx, "u1")
	if len(list) != 1 || list[0].ID != "s2" {
		t.Fatalf("after delete: %+v", list)
	}
}

func testDeleteUserServer(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateUserServer(ctx, control.UserServer{ID: "s1", UserID: "u1", Name: "one", Host: "h:1", Country: "DE", CreatedAt: t0, UpdatedAt: t0}))
	must(t, s.CreateUserServer(ctx, control.UserServer{ID: "s2", UserID: "u1", Name: "two", Host: "h:2", Country: "DE", CreatedAt: t0, UpdatedAt: t0}))
	r := netip.MustParsePrefix("100.66.1.0/24")
	_, err := s.CreateNetwork(ctx, control.Network{ID: "n1", OwnerID: "u1", Name: "a", Range: r, Range6: ula(t, 24), ServerID: "s1", CreatedAt: t0}, 0, noPick(t))
	must(t, err)
	r = netip.MustParsePrefix("100.66.2.0/24")
	_, err = s.CreateNetwork(ctx, control.Network{ID: "n2", OwnerID: "u1", Name: "b", Range: r, Range6: ula(t, 24), ServerID: "s2", CreatedAt: t0}, 0, noPick(t))
	must(t, err)
	if n, _ := s.NetworkByID(ctx, "n1"); n.ServerID != "s1" {
		t.Fatalf("ServerID = %q", n.ServerID)
	}

	must(t, s.DeleteUserServer(ctx, "s1"))
	n1, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if n1.ServerID != "" {
		t.Fatalf("n1 still uses deleted server %q", n1.ServerID)
	}
	n2, err := s.NetworkByID(ctx, "n2")
	must(t, err)
	if n2.ServerID != "s2" {
		t.Fatalf("n2 server changed to %q", n2.ServerID)
	}
}
