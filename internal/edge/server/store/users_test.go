package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- users ----

func testUsers(t *testing.T, s *store.Store) {
	b := control.User{ID: "u_b", Email: "b@example.com", PasswordHash: "hb", Plan: "pro", CreatedAt: at(time.Second)}
	a := control.User{ID: "u_a", Email: "a@example.com", PasswordHash: "ha", Plan: "free", CreatedAt: at(2 * time.Second)}
	must(t, s.CreateUser(ctx, b))
	must(t, s.CreateUser(ctx, a))

	got, err := s.UserByID(ctx, "u_a")
	must(t, err)
	if got.ID != a.ID || got.Email != a.Email || got.PasswordHash != a.PasswordHash || got.Plan != a.Plan || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("UserByID = %+v, want %+v", got, a)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
	}
	_, err = s.UserByID(ctx, "u_missing")
	wantErr(t, err, control.ErrNotFound)
	_, err = s.UserByEmail(ctx, "missing@example.com")
	wantErr(t, err, control.ErrNotFound)

	list, err := s.ListUsers(ctx)
	must(t, err)
	if len(list) != 2 || list[0].ID != "u_b" || list[1].ID != "u_a" {
		t.Fatalf("ListUsers = %+v, want u_b then u_a (by created_at)", list)
	}

	must(t, s.SetUserPlan(ctx, "u_a", "unlimited"))
	got, err = s.UserByID(ctx, "u_a")
	must(t, err)
	if got.Plan != "unlimited" {
		t.Fatalf("plan = %q after SetUserPlan", got.Plan)
	}
	wantErr(t, s.SetUserPlan(ctx, "u_missing", "pro"), control.ErrNotFound)

	// Duplicate id.
	wantErr(t, s.CreateUser(ctx, control.User{ID: "u_a", Email: "other@example.com", Plan: "free"}), control.ErrConflict)
}

func testUserEmailUnique(t *testing.T, s *store.Store) {
	must(t, s.CreateUser(ctx, control.User{ID: "u1", Email: "Alice@Example.COM", PasswordHash: "h", Plan: "free", CreatedAt: t0}))
	for _, e := range []string{"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM"} {
		u, err := s.UserByEmail(ctx, e)
		if err != nil {
			t.Fatalf("UserByEmail(%q): %v", e, err)
		}
		if u.ID != "u1" {
			t.Fatalf("UserByEmail(%q) = %s", e, u.ID)
		}
		if u.Email != "alice@example.com" {
			t.Fatalf("stored email = %q, want lower case", u.Email)
		}
	}
	wantErr(t, s.CreateUser(ctx, control.User{ID: "u2", Email: "aLiCe@example.com", PasswordHash: "h", Plan: "free", CreatedAt: t0}), control.ErrConflict)
	if _, err := s.UserByID(ctx, "u2"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("conflicting user was stored: %v", err)
	}
}
