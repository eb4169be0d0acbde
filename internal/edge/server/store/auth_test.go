package store_test

import (
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- security keys ----

func testSecurityKeys(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	k2 := control.SecurityKey{ID: "k2", UserID: "u1", Name: "ci", Hash: "hash2", CreatedAt: at(2 * time.Second), ExpiresAt: at(time.Hour)}
	k1 := control.SecurityKey{ID: "k1", UserID: "u1", Name: "laptop", Hash: "hash1", CreatedAt: at(3 * time.Second)}
	kx := control.SecurityKey{ID: "kx", UserID: "u2", Name: "other", Hash: "hashx", CreatedAt: t0}
	for _, k := range []control.SecurityKey{k2, k1, kx} {
		must(t, s.CreateSecurityKey(ctx, k))
	}
	wantErr(t, s.CreateSecurityKey(ctx, control.SecurityKey{ID: "k3", UserID: "u1", Name: "dup", Hash: "hash1", CreatedAt: t0}), control.ErrConflict)

	got, err := s.SecurityKeyByHash(ctx, "hash2")
	must(t, err)
	if got.ID != "k2" || got.UserID != "u1" || got.Name != "ci" || !got.CreatedAt.Equal(k2.CreatedAt) || !got.ExpiresAt.Equal(k2.ExpiresAt) ||
		!got.RevokedAt.IsZero() || !got.LastUsedAt.IsZero() {
		t.Fatalf("SecurityKeyByHash = %+v, want %+v", got, k2)
	}
	got, err = s.SecurityKeyByID(ctx, "k1")
	must(t, err)
	if got.Hash != "hash1" || !got.ExpiresAt.IsZero() {
		t.Fatalf("SecurityKeyByID = %+v (zero ExpiresAt must stay zero)", got)
	}
	_, err = s.SecurityKeyByHash(ctx, "nope")
	wantErr(t, err, control.ErrNotFound)
	_, err = s.SecurityKeyByID(ctx, "nope")
	wantErr(t, err, control.ErrNotFound)

	list, err := s.ListSecurityKeys(ctx, "u1")
	must(t, err)
	if len(list) != 2 || list[0].ID != "k2" || list[1].ID != "k1" {
		t.Fatalf("ListSecurityKeys(u1) = %+v, want k2, k1 (by created_at)", list)
	}
	list, err = s.ListSecurityKeys(ctx, "u_none")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("ListSecurityKeys(unknown) = %+v", list)
	}

	must(t, s.TouchSecurityKey(ctx, "k1", at(time.Minute)))
	got, err = s.SecurityKeyByID(ctx, "k1")
	must(t, err)
	if !got.LastUsedAt.Equal(at(time.Minute)) {
		t.Fatalf("LastUsedAt = %v after touch", got.LastUsedAt)
	}
	must(t, s.TouchSecurityKey(ctx, "k1", at(2*time.Minute)))
	got, _ = s.SecurityKeyByID(ctx, "k1")
	if !got.LastUsedAt.Equal(at(2 * time.Minute)) {
		t.Fatalf("LastUsedAt = %v after second touch", got.LastUsedAt)
	}
	other, _ := s.SecurityKeyByID(ctx, "k2")
	if !other.LastUsedAt.IsZero() {
		t.Fatalf("touching k1 touched k2: %+v", other)
	}
}

func testRevokeSecurityKey(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	must(t, s.CreateSecurityKey(ctx, control.SecurityKey{ID: "k1", UserID: "u1", Name: "a", Hash: "h1", CreatedAt: t0}))
	must(t, s.CreateSecurityKey(ctx, control.SecurityKey{ID: "k2", UserID: "u1", Name: "b", Hash: "h2", CreatedAt: t0}))
	exp := at(time.Hour)
	for _, rt := range []control.RefreshToken{
		{ID: "r1", FamilyID: "f1", UserID: "u1", KeyID: "k1", Hash: "rh1", CreatedAt: t0, ExpiresAt: exp},
		{ID: "r2", FamilyID: "f1", UserID: "u1", KeyID: "k1", Hash: "rh2", CreatedAt: t0, ExpiresAt: exp},
		{ID: "r3", FamilyID: "f2", UserID: "u1", KeyID: "k1", Hash: "rh3", CreatedAt: t0, ExpiresAt: exp},
		{ID: "r4", FamilyID: "f3", UserID: "u1", KeyID: "k2", Hash: "rh4", CreatedAt: t0, ExpiresAt: exp},
		{ID: "r5", FamilyID: "f4", UserID: "u1", Hash: "rh5", CreatedAt: t0, ExpiresAt: exp}, // browser login
	} {
		must(t, s.CreateRefreshToken(ctx, rt))
	}

	// Another user cannot revoke u1's key.
	wantErr(t, s.RevokeSecurityKey(ctx, "u2", "k1", at(time.Second)), control.ErrNotFound)
	wantErr(t, s.RevokeSecurityKey(ctx, "u1", "k_missing", at(time.Second)), control.ErrNotFound)
	if k, _ := s.SecurityKeyByID(ctx, "k1"); !k.RevokedAt.IsZero() {
		t.Fatalf("key revoked by a foreign user: %+v", k)
	}

	must(t, s.RevokeSecurityKey(ctx, "u1", "k1", at(time.Second)))
	k, err := s.SecurityKeyByID(ctx, "k1")
	must(t, err)
	if !k.RevokedAt.Equal(at(time.Second)) {
		t.Fatalf("RevokedAt = %v", k.RevokedAt)
	}
	// Revoking again keeps the first time.
	must(t, s.RevokeSecurityKey(ctx, "u1", "k1", at(time.Minute)))
	k, _ = s.SecurityKeyByID(ctx, "k1")
	if !k.RevokedAt.Equal(at(time.Second)) {
		t.Fatalf("RevokedAt = %v after second revoke, want first time kept", k.RevokedAt)
	}

	// Every token of k1's families is unusable (reported as reuse); the
	// other key's and the browser family's are not.
	for _, h := range []string{"rh1", "rh2", "rh3"} {
		rt, err := s.UseRefreshToken(ctx, h, at(2*time.Second))
		wantErr(t, err, control.ErrConflict)
		if rt.KeyID != "k1" || rt.RevokedAt.IsZero() {
			t.Fatalf("token %s = %+v, want revoked token of k1", h, rt)
		}
	}
	for _, h := range []string{"rh4", "rh5"} {
		if _, err := s.UseRefreshToken(ctx, h, at(2*time.Second)); err != nil {
			t.Fatalf("UseRefreshToken(%s) after revoking another key: %v", h, err)
		}
	}
	if k2, _ := s.SecurityKeyByID(ctx, "k2"); !k2.RevokedAt.IsZero() {
		t.Fatalf("k2 revoked too: %+v", k2)
	}
}
