package store_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

// ---- refresh tokens ----

func testRefreshTokens(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateSecurityKey(ctx, control.SecurityKey{ID: "k1", UserID: "u1", Name: "a", Hash: "h1", CreatedAt: t0}))
	rt := control.RefreshToken{ID: "r1", FamilyID: "fam", UserID: "u1", KeyID: "k1", Hash: "rh1", CreatedAt: t0, ExpiresAt: at(time.Hour)}
	must(t, s.CreateRefreshToken(ctx, rt))
	wantErr(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "r2", FamilyID: "fam", UserID: "u1", Hash: "rh1", CreatedAt: t0, ExpiresAt: at(time.Hour)}), control.ErrConflict)

	got, err := s.UseRefreshToken(ctx, "rh1", at(time.Minute))
	must(t, err)
	if got.ID != "r1" || got.FamilyID != "fam" || got.UserID != "u1" || got.KeyID != "k1" || got.Hash != "rh1" ||
		!got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(at(time.Hour)) || !got.UsedAt.Equal(at(time.Minute)) || !got.RevokedAt.IsZero() {
		t.Fatalf("UseRefreshToken = %+v", got)
	}

	// Second use: reuse, reported with the token so its family can be revoked.
	got, err = s.UseRefreshToken(ctx, "rh1", at(2*time.Minute))
	wantErr(t, err, control.ErrConflict)
	if got.FamilyID != "fam" || got.UserID != "u1" || !got.UsedAt.Equal(at(time.Minute)) {
		t.Fatalf("reused token = %+v, want family fam used at first use", got)
	}

	_, err = s.UseRefreshToken(ctx, "unknown", at(time.Minute))
	wantErr(t, err, control.ErrNotFound)

	// A browser-login token (no key) round-trips KeyID "".
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "r3", FamilyID: "fam2", UserID: "u1", Hash: "rh3", CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	got, err = s.UseRefreshToken(ctx, "rh3", at(time.Minute))
	must(t, err)
	if got.KeyID != "" {
		t.Fatalf("KeyID = %q, want empty", got.KeyID)
	}
}

func testRefreshTokenExpired(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "r1", FamilyID: "f", UserID: "u1", Hash: "rh1", CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "r2", FamilyID: "f", UserID: "u1", Hash: "rh2", CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	_, err := s.UseRefreshToken(ctx, "rh1", at(2*time.Hour))
	wantErr(t, err, control.ErrNotFound)
	// Exactly at expiry it is expired too.
	_, err = s.UseRefreshToken(ctx, "rh2", at(time.Hour))
	wantErr(t, err, control.ErrNotFound)
	// A rejected expired use does not mark the token used.
	got, err := s.UseRefreshToken(ctx, "rh1", at(time.Hour-time.Millisecond))
	if err != nil {
		t.Fatalf("use before expiry after an expired attempt: %v", err)
	}
	if !got.UsedAt.Equal(at(time.Hour - time.Millisecond)) {
		t.Fatalf("UsedAt = %v", got.UsedAt)
	}
}

func testRefreshFamilyRevoked(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	exp := at(time.Hour)
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "a1", FamilyID: "fa", UserID: "u1", Hash: "ha1", CreatedAt: t0, ExpiresAt: exp}))
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "a2", FamilyID: "fa", UserID: "u1", Hash: "ha2", CreatedAt: t0, ExpiresAt: exp}))
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "b1", FamilyID: "fb", UserID: "u1", Hash: "hb1", CreatedAt: t0, ExpiresAt: exp}))

	must(t, s.RevokeRefreshFamily(ctx, "fa", at(time.Second)))
	must(t, s.RevokeRefreshFamily(ctx, "f_unknown", at(time.Second))) // no-op
	for _, h := range []string{"ha1", "ha2"} {
		got, err := s.UseRefreshToken(ctx, h, at(2*time.Second))
		wantErr(t, err, control.ErrConflict)
		if got.FamilyID != "fa" || !got.RevokedAt.Equal(at(time.Second)) || !got.UsedAt.IsZero() {
			t.Fatalf("revoked token = %+v", got)
		}
	}
	// Revoking again does not move revoked_at.
	must(t, s.RevokeRefreshFamily(ctx, "fa", at(time.Minute)))
	got, _ := s.UseRefreshToken(ctx, "ha1", at(2*time.Minute))
	if !got.RevokedAt.Equal(at(time.Second)) {
		t.Fatalf("RevokedAt moved to %v", got.RevokedAt)
	}
	if _, err := s.UseRefreshToken(ctx, "hb1", at(2*time.Second)); err != nil {
		t.Fatalf("other family affected: %v", err)
	}
}

func testRefreshConcurrentUse(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateRefreshToken(ctx, control.RefreshToken{ID: "r1", FamilyID: "f", UserID: "u1", Hash: "rh", CreatedAt: t0, ExpiresAt: at(time.Hour)}))
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.UseRefreshToken(ctx, "rh", at(time.Second))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, control.ErrConflict):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent uses succeeded, want exactly 1", ok)
	}
}
