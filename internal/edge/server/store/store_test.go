package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// t0 is millisecond-aligned: the store keeps Unix milliseconds.
var t0 = time.UnixMilli(1_750_000_000_000).UTC()

func at(d time.Duration) time.Time { return t0.Add(d) }

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newStore(t *testing.T, db *sqldb.DB) *store.Store {
	t.Helper()
	s, err := store.New(context.Background(), db)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	return s
}

func openSQLite(t *testing.T) *store.Store {
	return newStore(t, openDB(t, filepath.Join(t.TempDir(), "omni.db")))
}

func openPostgres(t *testing.T) *store.Store {
	return newStore(t, openDB(t, testenv.Postgres(t)))
}

func TestSQLite(t *testing.T) { runSuite(t, openSQLite) }

func TestPostgres(t *testing.T) {
	testenv.Postgres(t) // skip (or fail when strict) early if unavailable
	runSuite(t, openPostgres)
}

// runSuite is the control.Store conformance suite shared by both dialects.
// Every subtest gets a fresh store from open.
func runSuite(t *testing.T, open func(t *testing.T) *store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *store.Store)
	}{
		{"Users", testUsers},
		{"UserEmailUniqueCaseInsensitive", testUserEmailUnique},
		{"SecurityKeys", testSecurityKeys},
		{"RevokeSecurityKeyRevokesFamilies", testRevokeSecurityKey},
		{"RefreshTokenRotation", testRefreshTokens},
		{"RefreshTokenExpired", testRefreshTokenExpired},
		{"RefreshFamilyRevoked", testRefreshFamilyRevoked},
		{"RefreshTokenConcurrentUse", testRefreshConcurrentUse},
		{"LoginSessions", testLoginSessions},
		{"DeviceSessions", testDeviceSessions},
		{"RegisterDevice", testRegisterDevice},
		{"RegisterDeviceLimit", testRegisterDeviceLimit},
		{"RegisterDeviceSameHardwareTwoUsers", testRegisterDeviceTwoUsers},
		{"RegisterDeviceConcurrentLimit", testRegisterDeviceConcurrent},
		{"ListRenameDevices", testListRenameDevices},
		{"DeleteDevice", testDeleteDevice},
		{"DevicePublicKeys", testDevicePublicKeys},
		{"FlushPresence", testFlushPresence},
		{"CreateNetwork", testCreateNetwork},
		{"CreateNetworkLimit", testCreateNetworkLimit},
		{"CreateNetworkPick", testCreateNetworkPick},
		{"CreateNetworkOverlap", testCreateNetworkOverlap},
		{"CreateNetworkUniqueIPv6", testCreateNetworkUniqueIPv6},
		{"CreateNetworkConcurrent", testCreateNetworkConcurrent},
		{"UpdateDeleteNetwork", testUpdateDeleteNetwork},
		{"Join", testJoin},
		{"JoinConcurrent", testJoinConcurrent},
		{"LeaveFreesHost", testLeaveFreesHost},
		{"SetExitEnabled", testSetExitEnabled},
		{"SelectExitNode", testSelectExitNode},
		{"ExitRoutes", testExitRoutes},
		{"LeaveClearsSelection", testLeaveClearsSelection},
		{"SelectExitNodeRacesLeave", testSelectLeaveRace},
		{"UserServers", testUserServers},
		{"DeleteUserServerClearsNetworks", testDeleteUserServer},
		{"Epoch", testEpoch},
		{"EpochUnchangedOnFailure", testEpochFailure},
		{"Migrate", testMigrate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// ---- helpers ----

var ctx = context.Background()

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addUser(t *testing.T, s *store.Store, id string) control.User {
	t.Helper()
	u := control.User{ID: id, Email: id + "@example.com", PasswordHash: "hash-" + id, Plan: "free", CreatedAt: t0}
	must(t, s.CreateUser(ctx, u))
	return u
}

func addDevice(t *testing.T, s *store.Store, userID, id string) control.Device {
	t.Helper()
	d := control.Device{ID: id, UserID: userID, HardwareUUID: "hw-" + id, Name: "name-" + id, Platform: "linux", CreatedAt: t0}
	got, created, err := s.RegisterDevice(ctx, d, 0)
	must(t, err)
	if !created || got.ID != id {
		t.Fatalf("RegisterDevice(%s) = %+v, created %v", id, got, created)
	}
	return got
}

func ula(t *testing.T, bits4 int) netip.Prefix {
	t.Helper()
	p, err := ipam.NewULA(rand.Reader, bits4)
	must(t, err)
	return p
}

func noPick(t *testing.T) func([]netip.Prefix) (netip.Prefix, error) {
	return func([]netip.Prefix) (netip.Prefix, error) {
		t.Error("pick called for an explicit range")
		return netip.Prefix{}, errors.New("unexpected pick")
	}
}

func addNetwork(t *testing.T, s *store.Store, owner, id, cidr string) control.Network {
	t.Helper()
	r := netip.MustParsePrefix(cidr)
	n := control.Network{ID: id, OwnerID: owner, Name: "net " + id, Range: r, Range6: ula(t, r.Bits()), SecretSealed: "v1:sealed-" + id, CreatedAt: t0}
	got, err := s.CreateNetwork(ctx, n, 0, noPick(t))
	must(t, err)
	return got
}

// join joins with ipam.Allocate and fails the test on error.
func join(t *testing.T, s *store.Store, n control.Network, deviceID string) control.Membership {
	t.Helper()
	m, _, err := s.Join(ctx, n.ID, deviceID, t0, func(used []uint32) (uint32, error) { return ipam.Allocate(n.Range, used) })
	must(t, err)
	return m
}

func epoch(t *testing.T, s *store.Store) int64 {
	t.Helper()
	v, err := s.Epoch(ctx)
	must(t, err)
	return v
}

func membership(t *testing.T, s *store.Store, networkID, deviceID string) control.Membership {
	t.Helper()
	m, err := s.Membership(ctx, networkID, deviceID)
	must(t, err)
	return m
}

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

// ---- devices ----

func testRegisterDevice(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	d := control.Device{ID: "d1", UserID: "u1", HardwareUUID: "HW-1", Name: "laptop", Platform: "linux", CreatedAt: t0}
	got, created, err := s.RegisterDevice(ctx, d, 5)
	must(t, err)
	if !created || got.ID != "d1" || got.Name != "laptop" {
		t.Fatalf("first register = %+v, %v", got, created)
	}

	// Same hardware: the existing device, not a new one, even with another id.
	got, created, err = s.RegisterDevice(ctx, control.Device{ID: "d_other", UserID: "u1", HardwareUUID: "HW-1", Name: "laptop", Platform: "linux", CreatedAt: at(time.Second)}, 5)
	must(t, err)
	if created || got.ID != "d1" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("re-register = %+v, created %v; want existing d1", got, created)
	}
	if _, err := s.DeviceByID(ctx, "d_other"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("duplicate device stored: %v", err)
	}

	// Name and platform are updated.
	got, created, err = s.RegisterDevice(ctx, control.Device{ID: "d_x", UserID: "u1", HardwareUUID: "HW-1", Name: "renamed", Platform: "macos"}, 5)
	must(t, err)
	if created || got.ID != "d1" || got.Name != "renamed" || got.Platform != "macos" {
		t.Fatalf("re-register with new name = %+v, %v", got, created)
	}
	stored, err := s.DeviceByID(ctx, "d1")
	must(t, err)
	if stored.Name != "renamed" || stored.Platform != "macos" || stored.HardwareUUID != "HW-1" || stored.UserID != "u1" {
		t.Fatalf("stored = %+v", stored)
	}
	// Empty name/platform keep the stored ones.
	got, _, err = s.RegisterDevice(ctx, control.Device{ID: "d_y", UserID: "u1", HardwareUUID: "HW-1"}, 5)
	must(t, err)
	if got.Name != "renamed" || got.Platform != "macos" {
		t.Fatalf("empty name/platform overwrote: %+v", got)
	}
	// Only the platform changes: the name is kept, and vice versa.
	got, _, err = s.RegisterDevice(ctx, control.Device{ID: "d_z", UserID: "u1", HardwareUUID: "HW-1", Platform: "windows"}, 5)
	must(t, err)
	if got.Name != "renamed" || got.Platform != "windows" {
		t.Fatalf("platform-only update = %+v", got)
	}
	got, _, err = s.RegisterDevice(ctx, control.Device{ID: "d_z", UserID: "u1", HardwareUUID: "HW-1", Name: "again"}, 5)
	must(t, err)
	if got.Name != "again" || got.Platform != "windows" {
		t.Fatalf("name-only update = %+v", got)
	}
	if stored, _ := s.DeviceByID(ctx, "d1"); stored.Name != "again" || stored.Platform != "windows" {
		t.Fatalf("stored after partial updates = %+v", stored)
	}

	byHW, err := s.DeviceByHardware(ctx, "u1", "HW-1")
	must(t, err)
	if byHW.ID != "d1" {
		t.Fatalf("DeviceByHardware = %+v", byHW)
	}
	_, err = s.DeviceByHardware(ctx, "u1", "HW-2")
	wantErr(t, err, control.ErrNotFound)
	_, err = s.DeviceByHardware(ctx, "u2", "HW-1")
	wantErr(t, err, control.ErrNotFound)
	_, err = s.DeviceByID(ctx, "nope")
	wantErr(t, err, control.ErrNotFound)
	if !byHW.LastSeen.IsZero() || byHW.ExitConsent {
		t.Fatalf("new device has presence: %+v", byHW)
	}
}

func testRegisterDeviceLimit(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	reg := func(user, id string, max int) (control.Device, bool, error) {
		return s.RegisterDevice(ctx, control.Device{ID: id, UserID: user, HardwareUUID: "hw-" + id, Name: id, Platform: "linux", CreatedAt: t0}, max)
	}
	for _, id := range []string{"a", "b"} {
		if _, _, err := reg("u1", id, 2); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	_, _, err := reg("u1", "c", 2)
	wantErr(t, err, control.ErrLimit)
	if _, err := s.DeviceByID(ctx, "c"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("device over the limit stored: %v", err)
	}
	// At the limit, a known device still registers (idempotent), also with a rename.
	got, created, err := s.RegisterDevice(ctx, control.Device{ID: "zz", UserID: "u1", HardwareUUID: "hw-a", Name: "renamed"}, 2)
	if err != nil || created || got.ID != "a" || got.Name != "renamed" {
		t.Fatalf("re-register at limit = %+v, %v, %v", got, created, err)
	}
	// A lower limit than the current count still lets known devices in.
	if _, created, err := reg("u1", "b", 1); err != nil || created {
		t.Fatalf("re-register over limit = %v, %v", created, err)
	}
	// Limits are per user.
	if _, _, err := reg("u2", "x", 2); err != nil {
		t.Fatalf("other user's device: %v", err)
	}
	// 0: unlimited.
	if _, _, err := reg("u1", "c", 0); err != nil {
		t.Fatalf("unlimited: %v", err)
	}
	list, err := s.ListDevices(ctx, "u1")
	must(t, err)
	if len(list) != 3 {
		t.Fatalf("u1 has %d devices, want 3", len(list))
	}
}

func testRegisterDeviceTwoUsers(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	d1, c1, err := s.RegisterDevice(ctx, control.Device{ID: "d1", UserID: "u1", HardwareUUID: "same", Name: "one", Platform: "linux", CreatedAt: t0}, 0)
	must(t, err)
	d2, c2, err := s.RegisterDevice(ctx, control.Device{ID: "d2", UserID: "u2", HardwareUUID: "same", Name: "two", Platform: "linux", CreatedAt: t0}, 0)
	must(t, err)
	if !c1 || !c2 || d1.ID == d2.ID {
		t.Fatalf("same hardware for two users: %+v (%v), %+v (%v); want two devices", d1, c1, d2, c2)
	}
	for user, want := range map[string]string{"u1": "d1", "u2": "d2"} {
		d, err := s.DeviceByHardware(ctx, user, "same")
		must(t, err)
		if d.ID != want {
			t.Fatalf("DeviceByHardware(%s) = %s, want %s", user, d.ID, want)
		}
	}
	// A duplicate device id is a conflict.
	_, _, err = s.RegisterDevice(ctx, control.Device{ID: "d1", UserID: "u2", HardwareUUID: "other", Name: "x", Platform: "linux"}, 0)
	wantErr(t, err, control.ErrConflict)
}

func testRegisterDeviceConcurrent(t *testing.T, s *store.Store) {
	// A few rounds, as a lost race shows only some of the time.
	for round := range 3 {
		registerConcurrently(t, s, round)
	}
}

func registerConcurrently(t *testing.T, s *store.Store, round int) {
	t.Helper()
	many, one := fmt.Sprintf("many%d", round), fmt.Sprintf("one%d", round)
	addUser(t, s, many)
	addUser(t, s, one)
	const n, limit = 24, 5
	var wg sync.WaitGroup
	start := make(chan struct{})
	// Distinct hardware from many goroutines: exactly limit devices.
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			id := fmt.Sprintf("%s-d%02d", many, i)
			_, _, errs[i] = s.RegisterDevice(ctx, control.Device{ID: id, UserID: many, HardwareUUID: "hw" + id, Name: id, Platform: "linux", CreatedAt: t0}, limit)
		})
	}
	// The same hardware from many goroutines: one device.
	same := make([]control.Device, n)
	sameErr := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			same[i], _, sameErr[i] = s.RegisterDevice(ctx, control.Device{ID: fmt.Sprintf("%s-s%02d", one, i), UserID: one, HardwareUUID: "one", Name: "x", Platform: "linux", CreatedAt: t0}, limit)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, control.ErrLimit):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != limit {
		t.Fatalf("round %d: %d concurrent registrations succeeded, want exactly %d", round, ok, limit)
	}
	for i := range n {
		if sameErr[i] != nil {
			t.Fatalf("round %d: concurrent same-hardware register: %v", round, sameErr[i])
		}
		if same[i].ID != same[0].ID {
			t.Fatalf("round %d: same hardware got ids %s and %s", round, same[0].ID, same[i].ID)
		}
	}
	for user, want := range map[string]int{many: limit, one: 1} {
		list, err := s.ListDevices(ctx, user)
		must(t, err)
		if len(list) != want {
			t.Fatalf("round %d: %s has %d devices, want %d", round, user, len(list), want)
		}
	}
}

func testListRenameDevices(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	for i, id := range []string{"c", "a", "b"} {
		_, _, err := s.RegisterDevice(ctx, control.Device{ID: id, UserID: "u1", HardwareUUID: "hw" + id, Name: id, Platform: "linux", CreatedAt: at(time.Duration(i) * time.Second)}, 0)
		must(t, err)
	}
	_, _, err := s.RegisterDevice(ctx, control.Device{ID: "z", UserID: "u2", HardwareUUID: "hwz", Name: "z", Platform: "windows", CreatedAt: at(-time.Second)}, 0)
	must(t, err)

	ids := func(ds []control.Device) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	list, err := s.ListDevices(ctx, "u1")
	must(t, err)
	if got := ids(list); !slices.Equal(got, []string{"c", "a", "b"}) {
		t.Fatalf("ListDevices(u1) = %v, want by created_at", got)
	}
	all, err := s.ListDevices(ctx, "")
	must(t, err)
	if got := ids(all); !slices.Equal(got, []string{"z", "c", "a", "b"}) {
		t.Fatalf("ListDevices(\"\") = %v", got)
	}
	none, err := s.ListDevices(ctx, "u_none")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("ListDevices(unknown) = %v", ids(none))
	}

	must(t, s.RenameDevice(ctx, "a", "new name"))
	d, err := s.DeviceByID(ctx, "a")
	must(t, err)
	if d.Name != "new name" || d.Platform != "linux" {
		t.Fatalf("after rename: %+v", d)
	}
	wantErr(t, s.RenameDevice(ctx, "missing", "x"), control.ErrNotFound)
}

func testDeleteDevice(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	for _, id := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", id)
	}
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, n := range []control.Network{n1, n2} {
		for _, d := range []string{"a", "b", "c"} {
			join(t, s, n, d)
		}
		must(t, s.SelectExitNode(ctx, n.ID, "a", "b"))
		must(t, s.SelectExitNode(ctx, n.ID, "c", "b"))
	}
	hostB := membership(t, s, "n1", "b").Host

	e := epoch(t, s)
	var rotated []string
	must(t, s.DeleteDevice(ctx, "b", func(networkID string) string {
		rotated = append(rotated, networkID)
		return "v1:rotated-" + networkID
	}))
	if epoch(t, s) <= e {
		t.Fatal("epoch did not advance on DeleteDevice")
	}
	// Each network it was a member of got a new secret.
	if len(rotated) != 2 || rotated[0] != "n1" || rotated[1] != "n2" {
		t.Fatalf("rotated %v, want n1 and n2", rotated)
	}
	for _, id := range rotated {
		n, err := s.NetworkByID(ctx, id)
		must(t, err)
		if n.SecretSealed != "v1:rotated-"+id || n.SecretVersion != 2 {
			t.Fatalf("%s after DeleteDevice: sealed %q version %d", id, n.SecretSealed, n.SecretVersion)
		}
	}
	_, err := s.DeviceByID(ctx, "b")
	wantErr(t, err, control.ErrNotFound)
	ms, err := s.DeviceMemberships(ctx, "b")
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("memberships of deleted device remain: %+v", ms)
	}
	for _, n := range []string{"n1", "n2"} {
		_, err := s.Membership(ctx, n, "b")
		wantErr(t, err, control.ErrNotFound)
		members, err := s.Members(ctx, n)
		must(t, err)
		if len(members) != 2 {
			t.Fatalf("%s has %d members, want 2", n, len(members))
		}
		for _, m := range members {
			if m.ExitNodeID != "" {
				t.Fatalf("%s: %s still selects deleted exit node %q", n, m.DeviceID, m.ExitNodeID)
			}
		}
	}
	routes, err := s.ExitRoutes(ctx, "a")
	must(t, err)
	if len(routes) != 0 {
		t.Fatalf("ExitRoutes(a) after deleting its exit node = %+v", routes)
	}
	// The deleted device's address is free again.
	addDevice(t, s, "u1", "d")
	if m := join(t, s, n1, "d"); m.Host != hostB {
		t.Fatalf("new member got host %d, want freed host %d", m.Host, hostB)
	}

	wantErr(t, s.DeleteDevice(ctx, "b", noRotate), control.ErrNotFound)
}

// noRotate leaves secrets as they are.
func noRotate(string) string { return "" }

// Device keys: set on registration or later, unique per user (another
// user may have the same), listed with the memberships; secret versions
// per device.
func testDevicePublicKeys(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	const k1, k2 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	d := control.Device{ID: "a", UserID: "u1", HardwareUUID: "hw-a", Name: "a", Platform: "linux", CreatedAt: t0, PublicKey: k1}
	got, created, err := s.RegisterDevice(ctx, d, 0)
	must(t, err)
	if !created || got.PublicKey != k1 {
		t.Fatalf("registered %+v", got)
	}
	addDevice(t, s, "u1", "b") // no key
	// Another device of u1 cannot take k1; a device of u2 can.
	_, _, err = s.RegisterDevice(ctx, control.Device{ID: "c", UserID: "u1", HardwareUUID: "hw-c", Name: "c", CreatedAt: t0, PublicKey: k1}, 0)
	wantErr(t, err, control.ErrConflict)
	_, _, err = s.RegisterDevice(ctx, control.Device{ID: "b", UserID: "u1", HardwareUUID: "hw-b", PublicKey: k1}, 0)
	wantErr(t, err, control.ErrConflict)
	_, created, err = s.RegisterDevice(ctx, control.Device{ID: "x", UserID: "u2", HardwareUUID: "hw-x", Name: "x", CreatedAt: t0, PublicKey: k1}, 0)
	if err != nil || !created {
		t.Fatalf("another user's device with the same key: %v %v", created, err)
	}
	// Re-registering changes the key (and the epoch); without a key it stays.
	e := epoch(t, s)
	got, created, err = s.RegisterDevice(ctx, control.Device{ID: "zz", UserID: "u1", HardwareUUID: "hw-a", PublicKey: k2}, 0)
	if err != nil || created || got.ID != "a" || got.PublicKey != k2 {
		t.Fatalf("key change: %+v %v %v", got, created, err)
	}
	if epoch(t, s) <= e {
		t.Error("epoch did not advance on a key change")
	}
	got, _, err = s.RegisterDevice(ctx, control.Device{ID: "zz", UserID: "u1", HardwareUUID: "hw-a", Name: "renamed"}, 0)
	if err != nil || got.PublicKey != k2 || got.Name != "renamed" {
		t.Fatalf("re-register without key: %+v %v", got, err)
	}
	if d, _ := s.DeviceByID(ctx, "a"); d.PublicKey != k2 {
		t.Fatalf("stored key %q", d.PublicKey)
	}
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	ma, mb := join(t, s, n, "a"), join(t, s, n, "b")
	keys, err := s.MemberKeys(ctx, n.ID)
	must(t, err)
	if len(keys) != 2 || keys[0] != (control.MemberKey{DeviceID: "a", Host: ma.Host, PublicKey: k2}) ||
		keys[1] != (control.MemberKey{DeviceID: "b", Host: mb.Host}) {
		t.Fatalf("member keys %+v", keys)
	}
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	join(t, s, n2, "a")
	join(t, s, n2, "b")
	must(t, s.Leave(ctx, n2.ID, "b", "v1:rotated"))
	vs, err := s.SecretVersions(ctx, "a")
	must(t, err)
	if len(vs) != 2 || vs[0] != (control.SecretVersion{NetworkID: "n1", Version: 1}) || vs[1] != (control.SecretVersion{NetworkID: "n2", Version: 2}) {
		t.Fatalf("secret versions %+v", vs)
	}
}

func testFlushPresence(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addDevice(t, s, "u1", "a")
	addDevice(t, s, "u1", "b")

	check := func(id string, seen time.Time, consent bool) {
		t.Helper()
		d, err := s.DeviceByID(ctx, id)
		must(t, err)
		if !d.LastSeen.Equal(seen) || d.ExitConsent != consent {
			t.Fatalf("%s: LastSeen %v consent %v, want %v %v", id, d.LastSeen, d.ExitConsent, seen, consent)
		}
	}
	must(t, s.FlushPresence(ctx, nil))
	must(t, s.FlushPresence(ctx, []control.Presence{
		{DeviceID: "a", At: at(10 * time.Second), ExitConsent: true},
		{DeviceID: "b", At: at(5 * time.Second)},
		{DeviceID: "unknown", At: at(5 * time.Second)}, // ignored
	}))
	check("a", at(10*time.Second), true)
	check("b", at(5*time.Second), false)

	// Older presence (another replica flushing late) never overwrites newer.
	must(t, s.FlushPresence(ctx, []control.Presence{{DeviceID: "a", At: at(9 * time.Second), ExitConsent: false}}))
	check("a", at(10*time.Second), true)

	// Newer wins, in either field.
	must(t, s.FlushPresence(ctx, []control.Presence{{DeviceID: "a", At: at(11 * time.Second), ExitConsent: false}}))
	check("a", at(11*time.Second), false)

	// More than one batch; within a flush the newest still wins whatever the order.
	var big []control.Presence
	for i := range 1200 {
		big = append(big, control.Presence{DeviceID: "b", At: at(time.Duration(1200-i) * time.Minute), ExitConsent: i%2 == 0})
	}
	big = append(big, control.Presence{DeviceID: "a", At: at(time.Hour)})
	must(t, s.FlushPresence(ctx, big))
	check("b", at(1200*time.Minute), true)
	check("a", at(time.Hour), false)
}

// ---- networks ----

func testCreateNetwork(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	r6 := ula(t, 24)
	n := control.Network{ID: "n1", OwnerID: "u1", Name: "home", Range: netip.MustParsePrefix("100.66.1.0/24"), Range6: r6, SecretSealed: "v1:abc", CreatedAt: at(time.Second)}
	got, err := s.CreateNetwork(ctx, n, 0, noPick(t))
	must(t, err)
	if got.Range != n.Range || got.Range6 != r6 {
		t.Fatalf("CreateNetwork = %+v", got)
	}
	stored, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if stored.ID != "n1" || stored.OwnerID != "u1" || stored.Name != "home" || stored.Range != n.Range || stored.Range6 != r6 ||
		stored.SecretSealed != "v1:abc" || stored.ServerID != "" || !stored.CreatedAt.Equal(n.CreatedAt) {
		t.Fatalf("NetworkByID = %+v, want %+v", stored, n)
	}
	_, err = s.NetworkByID(ctx, "missing")
	wantErr(t, err, control.ErrNotFound)

	// Duplicate id.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "n1", OwnerID: "u1", Name: "dup", Range: netip.MustParsePrefix("100.66.9.0/24"), Range6: ula(t, 24), CreatedAt: t0}, 0, noPick(t))
	wantErr(t, err, control.ErrConflict)

	addNetwork(t, s, "u2", "n2", "100.66.2.0/24")
	n0 := control.Network{ID: "n9", OwnerID: "u1", Name: "early", Range: netip.MustParsePrefix("100.66.3.0/24"), Range6: ula(t, 24), CreatedAt: t0}
	_, err = s.CreateNetwork(ctx, n0, 0, noPick(t))
	must(t, err)

	ids := func(ns []control.Network) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	list, err := s.ListNetworks(ctx, "u1")
	must(t, err)
	if got := ids(list); !slices.Equal(got, []string{"n9", "n1"}) {
		t.Fatalf("ListNetworks(u1) = %v", got)
	}
	all, err := s.ListNetworks(ctx, "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("ListNetworks(\"\") = %v", ids(all))
	}
}

func testCreateNetworkLimit(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	mk := func(owner, id, cidr string, max int) error {
		r := netip.MustParsePrefix(cidr)
		_, err := s.CreateNetwork(ctx, control.Network{ID: id, OwnerID: owner, Name: id, Range: r, Range6: ula(t, r.Bits()), CreatedAt: t0}, max, noPick(t))
		return err
	}
	must(t, mk("u1", "a", "100.66.1.0/24", 2))
	must(t, mk("u1", "b", "100.66.2.0/24", 2))
	wantErr(t, mk("u1", "c", "100.66.3.0/24", 2), control.ErrLimit)
	if _, err := s.NetworkByID(ctx, "c"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network over the limit stored: %v", err)
	}
	must(t, mk("u2", "d", "100.66.4.0/24", 2)) // per owner
	must(t, mk("u1", "e", "100.66.5.0/24", 0)) // 0: unlimited
}

func testCreateNetworkPick(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addNetwork(t, s, "u1", "a", "100.66.0.0/24")
	addNetwork(t, s, "u1", "b", "100.70.0.0/16")

	var seen []netip.Prefix
	pick := func(used []netip.Prefix) (netip.Prefix, error) {
		seen = slices.Clone(used)
		return ipam.PickRange(used)
	}
	got, err := s.CreateNetwork(ctx, control.Network{ID: "c", OwnerID: "u1", Name: "picked", Range6: ula(t, 24), CreatedAt: t0}, 0, pick)
	must(t, err)
	slices.SortFunc(seen, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	want := []netip.Prefix{netip.MustParsePrefix("100.66.0.0/24"), netip.MustParsePrefix("100.70.0.0/16")}
	if !slices.Equal(seen, want) {
		t.Fatalf("pick got used = %v, want %v", seen, want)
	}
	if got.Range != netip.MustParsePrefix("100.66.1.0/24") {
		t.Fatalf("picked range = %v, want 100.66.1.0/24", got.Range)
	}
	stored, err := s.NetworkByID(ctx, "c")
	must(t, err)
	if stored.Range != got.Range {
		t.Fatalf("stored range = %v, want %v", stored.Range, got.Range)
	}

	// The next pick sees the picked range too.
	got, err = s.CreateNetwork(ctx, control.Network{ID: "d", OwnerID: "u1", Name: "picked2", Range6: ula(t, 24), CreatedAt: t0}, 0, ipam.PickRange)
	must(t, err)
	if got.Range != netip.MustParsePrefix("100.66.2.0/24") {
		t.Fatalf("second pick = %v", got.Range)
	}

	// pick's error is returned and nothing is stored.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "e", OwnerID: "u1", Name: "full", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func([]netip.Prefix) (netip.Prefix, error) { return netip.Prefix{}, ipam.ErrNoRange })
	wantErr(t, err, ipam.ErrNoRange)
	if _, err := s.NetworkByID(ctx, "e"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network stored after pick failed: %v", err)
	}
	// A pick that returns a used range is rejected as an overlap.
	_, err = s.CreateNetwork(ctx, control.Network{ID: "f", OwnerID: "u1", Name: "bad pick", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func([]netip.Prefix) (netip.Prefix, error) { return netip.MustParsePrefix("100.70.5.0/24"), nil })
	wantErr(t, err, control.ErrOverlap)
}

func testCreateNetworkOverlap(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	addUser(t, s, "u2")
	addNetwork(t, s, "u1", "a", "100.66.1.0/24")
	for _, cidr := range []string{"100.66.1.0/24", "100.66.1.128/25", "100.66.0.0/16", "100.64.0.0/10", "100.66.1.252/30"} {
		r := netip.MustParsePrefix(cidr)
		_, err := s.CreateNetwork(ctx, control.Network{ID: "x" + cidr, OwnerID: "u1", Name: "x", Range: r, Range6: ula(t, r.Bits()), CreatedAt: t0}, 0, noPick(t))
		if !errors.Is(err, control.ErrOverlap) {
			t.Fatalf("CreateNetwork(%s) = %v, want ErrOverlap", cidr, err)
		}
	}
	// Ranges are per owner: another owner may take the same range, and
	// the default pick sees only the owner's own ranges.
	addNetwork(t, s, "u2", "same", "100.66.1.0/24")
	var seen []netip.Prefix
	got, err := s.CreateNetwork(ctx, control.Network{ID: "p", OwnerID: "u2", Name: "p", Range6: ula(t, 24), CreatedAt: t0}, 0,
		func(used []netip.Prefix) (netip.Prefix, error) { seen = used; return ipam.PickRange(used) })
	must(t, err)
	if len(seen) != 1 || seen[0].String() != "100.66.1.0/24" || got.Range.String() != "100.66.0.0/24" {
		t.Fatalf("pick saw %v and chose %s; want only u2's 100.66.1.0/24 and 100.66.0.0/24", seen, got.Range)
	}
	// Adjacent ranges are fine.
	addNetwork(t, s, "u1", "b", "100.66.0.0/24")
	addNetwork(t, s, "u1", "c", "100.66.2.0/23")
	all, err := s.ListNetworks(ctx, "")
	must(t, err)
	if len(all) != 5 {
		t.Fatalf("%d networks stored, want 5", len(all))
	}
}

func testCreateNetworkUniqueIPv6(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	r6 := ula(t, 24)
	_, err := s.CreateNetwork(ctx, control.Network{ID: "a", OwnerID: "u1", Name: "a", Range: netip.MustParsePrefix("100.66.1.0/24"), Range6: r6, CreatedAt: t0}, 0, noPick(t))
	must(t, err)
	_, err = s.CreateNetwork(ctx, control.Network{ID: "b", OwnerID: "u1", Name: "b", Range: netip.MustParsePrefix("100.66.2.0/24"), Range6: r6, CreatedAt: t0}, 0, noPick(t))
	wantErr(t, err, control.ErrConflict)
	if _, err := s.NetworkByID(ctx, "b"); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("network with duplicate v6 range stored: %v", err)
	}
}

func testCreateNetworkConcurrent(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	const n = 10
	nets := make([]control.Network, n)
	errs := make([]error, n)
	r6s := make([]netip.Prefix, n)
	for i := range n {
		r6s[i] = ula(t, 24)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			nets[i], errs[i] = s.CreateNetwork(ctx, control.Network{ID: fmt.Sprintf("n%d", i), OwnerID: "u1", Name: "c", Range6: r6s[i], CreatedAt: t0}, 0, ipam.PickRange)
		})
	}
	close(start)
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent CreateNetwork: %v", errs[i])
		}
		if seen[nets[i].Range] {
			t.Fatalf("range %v picked twice", nets[i].Range)
		}
		seen[nets[i].Range] = true
	}
}

func testUpdateDeleteNetwork(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	must(t, s.CreateUserServer(ctx, control.UserServer{ID: "s1", UserID: "u1", Name: "srv", Host: "srv.example.com:443", Country: "DE", CreatedAt: t0, UpdatedAt: t0}))
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")

	n.Name, n.ServerID = "renamed", "s1"
	n.Range = netip.MustParsePrefix("100.99.0.0/24") // not updatable
	must(t, s.UpdateNetwork(ctx, n))
	got, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if got.Name != "renamed" || got.ServerID != "s1" || got.Range != netip.MustParsePrefix("100.66.1.0/24") {
		t.Fatalf("after update: %+v", got)
	}
	n.ServerID = ""
	must(t, s.UpdateNetwork(ctx, n))
	got, _ = s.NetworkByID(ctx, "n1")
	if got.ServerID != "" {
		t.Fatalf("server not cleared: %+v", got)
	}
	// An unknown server is refused by the foreign key.
	n.ServerID = "s_missing"
	if err := s.UpdateNetwork(ctx, n); err == nil {
		t.Fatal("UpdateNetwork accepted an unknown server id")
	}
	wantErr(t, s.UpdateNetwork(ctx, control.Network{ID: "missing", Name: "x"}), control.ErrNotFound)

	addUser(t, s, "u2")
	addDevice(t, s, "u2", "d1")
	join(t, s, n, "d1")
	e := epoch(t, s)
	must(t, s.DeleteNetwork(ctx, "n1"))
	if epoch(t, s) <= e {
		t.Fatal("epoch did not advance on DeleteNetwork")
	}
	_, err = s.NetworkByID(ctx, "n1")
	wantErr(t, err, control.ErrNotFound)
	ms, err := s.DeviceMemberships(ctx, "d1")
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("memberships of deleted network remain: %+v", ms)
	}
	wantErr(t, s.DeleteNetwork(ctx, "n1"), control.ErrNotFound)
	// Its range is free again.
	addNetwork(t, s, "u1", "n2", "100.66.1.0/24")
}

// ---- memberships ----

func testJoin(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}

	var gotUsed [][]uint32
	alloc := func(h uint32) func([]uint32) (uint32, error) {
		return func(used []uint32) (uint32, error) {
			gotUsed = append(gotUsed, slices.Sorted(slices.Values(used)))
			return h, nil
		}
	}
	m, created, err := s.Join(ctx, "n1", "a", at(time.Second), alloc(7))
	must(t, err)
	if !created || m.NetworkID != "n1" || m.DeviceID != "a" || m.Host != 7 || m.IsExitNode || m.ExitNodeID != "" || !m.JoinedAt.Equal(at(time.Second)) {
		t.Fatalf("Join = %+v, %v", m, created)
	}
	_, _, err = s.Join(ctx, "n1", "b", at(2*time.Second), alloc(3))
	must(t, err)
	_, _, err = s.Join(ctx, "n1", "c", at(3*time.Second), alloc(200))
	must(t, err)
	if len(gotUsed) != 3 || len(gotUsed[0]) != 0 || !slices.Equal(gotUsed[1], []uint32{7}) || !slices.Equal(gotUsed[2], []uint32{3, 7}) {
		t.Fatalf("alloc saw used = %v", gotUsed)
	}

	// Idempotent: the existing membership, alloc not called, no epoch bump needed.
	again, created, err := s.Join(ctx, "n1", "a", at(time.Hour), func([]uint32) (uint32, error) {
		t.Error("alloc called for an existing member")
		return 0, errors.New("unexpected")
	})
	must(t, err)
	if created || again.Host != 7 || !again.JoinedAt.Equal(at(time.Second)) {
		t.Fatalf("re-join = %+v, %v", again, created)
	}

	// alloc's error is returned and nothing is stored.
	addDevice(t, s, "u1", "d")
	_, created, err = s.Join(ctx, "n1", "d", t0, func([]uint32) (uint32, error) { return 0, control.ErrExhausted })
	wantErr(t, err, control.ErrExhausted)
	if created {
		t.Fatal("created reported on failure")
	}
	_, err = s.Membership(ctx, "n1", "d")
	wantErr(t, err, control.ErrNotFound)
	// An alloc that returns a used host is refused by the unique index.
	_, _, err = s.Join(ctx, "n1", "d", t0, alloc(3))
	if err == nil {
		t.Fatal("Join stored a duplicate host")
	}

	members, err := s.Members(ctx, "n1")
	must(t, err)
	var hosts []uint32
	for _, m := range members {
		hosts = append(hosts, m.Host)
	}
	if !slices.Equal(hosts, []uint32{3, 7, 200}) {
		t.Fatalf("Members hosts = %v, want sorted 3, 7, 200", hosts)
	}
	got := membership(t, s, "n1", "b")
	if got.Host != 3 || !got.JoinedAt.Equal(at(2*time.Second)) {
		t.Fatalf("Membership(b) = %+v", got)
	}
	_, err = s.Membership(ctx, "n1", "zz")
	wantErr(t, err, control.ErrNotFound)

	// DeviceMemberships in join order.
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	_, _, err = s.Join(ctx, n2.ID, "a", t0, alloc(1))
	must(t, err)
	dm, err := s.DeviceMemberships(ctx, "a")
	must(t, err)
	if len(dm) != 2 || dm[0].NetworkID != "n2" || dm[1].NetworkID != "n1" {
		t.Fatalf("DeviceMemberships(a) = %+v", dm)
	}
	_ = n

	// Joining an unknown network or device is refused by the foreign keys.
	if _, _, err := s.Join(ctx, "n_missing", "a", t0, alloc(1)); err == nil {
		t.Fatal("joined an unknown network")
	}
	if _, _, err := s.Join(ctx, "n1", "d_missing", t0, alloc(50)); err == nil {
		t.Fatal("joined with an unknown device")
	}
}

func testJoinConcurrent(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	const count = 20
	for i := range count {
		addDevice(t, s, "u1", fmt.Sprintf("d%02d", i))
	}
	e := epoch(t, s)
	ms := make([]control.Membership, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range count {
		wg.Go(func() {
			<-start
			ms[i], _, errs[i] = s.Join(ctx, n.ID, fmt.Sprintf("d%02d", i), t0, func(used []uint32) (uint32, error) {
				return ipam.Allocate(n.Range, used)
			})
		})
	}
	close(start)
	wg.Wait()
	var hosts []uint32
	for i := range count {
		if errs[i] != nil {
			t.Fatalf("concurrent join %d: %v", i, errs[i])
		}
		hosts = append(hosts, ms[i].Host)
	}
	slices.Sort(hosts)
	for i, h := range hosts {
		if h != uint32(i+1) {
			t.Fatalf("hosts = %v, want 1..%d each once", hosts, count)
		}
	}
	members, err := s.Members(ctx, n.ID)
	must(t, err)
	if len(members) != count {
		t.Fatalf("%d members stored, want %d", len(members), count)
	}
	if got := epoch(t, s); got < e+count {
		t.Fatalf("epoch %d after %d joins from %d", got, count, e)
	}
}

func testLeaveFreesHost(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/30") // two hosts
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	if h := join(t, s, n, "a").Host; h != 1 {
		t.Fatalf("a host %d", h)
	}
	if h := join(t, s, n, "b").Host; h != 2 {
		t.Fatalf("b host %d", h)
	}
	_, _, err := s.Join(ctx, n.ID, "c", t0, func(used []uint32) (uint32, error) { return ipam.Allocate(n.Range, used) })
	wantErr(t, err, ipam.ErrExhausted)

	e := epoch(t, s)
	must(t, s.Leave(ctx, n.ID, "a", "v1:rotated"))
	if epoch(t, s) <= e {
		t.Fatal("epoch did not advance on Leave")
	}
	if got, err := s.NetworkByID(ctx, n.ID); err != nil || got.SecretSealed != "v1:rotated" || got.SecretVersion != 2 {
		t.Fatalf("after Leave: sealed %q version %d (%v), want the new secret, version 2", got.SecretSealed, got.SecretVersion, err)
	}
	_, err = s.Membership(ctx, n.ID, "a")
	wantErr(t, err, control.ErrNotFound)
	if h := join(t, s, n, "c").Host; h != 1 {
		t.Fatalf("c got host %d, want the freed 1", h)
	}
	wantErr(t, s.Leave(ctx, n.ID, "a", "v1:again"), control.ErrNotFound)
	wantErr(t, s.Leave(ctx, "n_missing", "b", "v1:again"), control.ErrNotFound)
	if got, _ := s.NetworkByID(ctx, n.ID); got.SecretSealed != "v1:rotated" || got.SecretVersion != 2 {
		t.Fatalf("a failed Leave rotated the secret: %q %d", got.SecretSealed, got.SecretVersion)
	}
}

func testSetExitEnabled(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	addDevice(t, s, "u1", "b")
	join(t, s, n, "a")
	join(t, s, n, "b")

	e := epoch(t, s)
	must(t, s.SetExitEnabled(ctx, "n1", "a", true))
	if !membership(t, s, "n1", "a").IsExitNode {
		t.Fatal("exit not enabled")
	}
	if membership(t, s, "n1", "b").IsExitNode {
		t.Fatal("other member enabled too")
	}
	e2 := epoch(t, s)
	if e2 <= e {
		t.Fatal("epoch did not advance on SetExitEnabled")
	}
	must(t, s.SetExitEnabled(ctx, "n1", "a", false))
	if membership(t, s, "n1", "a").IsExitNode {
		t.Fatal("exit not disabled")
	}
	if epoch(t, s) <= e2 {
		t.Fatal("epoch did not advance on SetExitEnabled(false)")
	}
	wantErr(t, s.SetExitEnabled(ctx, "n1", "zz", true), control.ErrNotFound)
	wantErr(t, s.SetExitEnabled(ctx, "n_missing", "a", true), control.ErrNotFound)
}

func testSelectExitNode(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	join(t, s, n1, "a")
	join(t, s, n1, "b")
	join(t, s, n2, "c") // c is not in n1

	// The exit must be a member of the same network.
	wantErr(t, s.SelectExitNode(ctx, "n1", "a", "c"), control.ErrNotFound)
	wantErr(t, s.SelectExitNode(ctx, "n1", "a", "d_missing"), control.ErrNotFound)
	// The selecting device must be a member.
	wantErr(t, s.SelectExitNode(ctx, "n1", "c", "b"), control.ErrNotFound)
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "" {
		t.Fatalf("failed select left %q", m.ExitNodeID)
	}

	e := epoch(t, s)
	must(t, s.SelectExitNode(ctx, "n1", "a", "b"))
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "b" {
		t.Fatalf("ExitNodeID = %q, want b", m.ExitNodeID)
	}
	if m := membership(t, s, "n1", "b"); m.ExitNodeID != "" {
		t.Fatalf("b's selection changed: %q", m.ExitNodeID)
	}
	e2 := epoch(t, s)
	if e2 <= e {
		t.Fatal("epoch did not advance on SelectExitNode")
	}
	must(t, s.SelectExitNode(ctx, "n1", "a", ""))
	if m := membership(t, s, "n1", "a"); m.ExitNodeID != "" {
		t.Fatalf("ExitNodeID = %q after clearing", m.ExitNodeID)
	}
	if epoch(t, s) <= e2 {
		t.Fatal("epoch did not advance on clearing the exit node")
	}
	// Clearing for a non-member is still not found.
	wantErr(t, s.SelectExitNode(ctx, "n1", "c", ""), control.ErrNotFound)
}

func testExitRoutes(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	n3 := addNetwork(t, s, "u1", "n3", "100.66.3.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	for _, n := range []control.Network{n1, n2, n3} {
		join(t, s, n, "c") // c first: host 1 everywhere
		join(t, s, n, "a")
		join(t, s, n, "b")
	}
	routes, err := s.ExitRoutes(ctx, "a")
	must(t, err)
	if len(routes) != 0 {
		t.Fatalf("ExitRoutes without selection = %+v", routes)
	}
	must(t, s.SetExitEnabled(ctx, "n1", "b", true))
	must(t, s.SelectExitNode(ctx, "n1", "a", "b"))
	must(t, s.SelectExitNode(ctx, "n2", "a", "c")) // selected but not enabled by the admin
	must(t, s.SelectExitNode(ctx, "n1", "b", "c")) // another device's selection

	routes, err = s.ExitRoutes(ctx, "a")
	must(t, err)
	slices.SortFunc(routes, func(x, y control.ExitRoute) int { return x.Range.Addr().Compare(y.Range.Addr()) })
	want := []control.ExitRoute{
		{NetworkID: "n1", ExitDeviceID: "b", ExitHost: membership(t, s, "n1", "b").Host, ExitEnabled: true, Range: n1.Range},
		{NetworkID: "n2", ExitDeviceID: "c", ExitHost: membership(t, s, "n2", "c").Host, ExitEnabled: false, Range: n2.Range},
	}
	if !slices.Equal(routes, want) {
		t.Fatalf("ExitRoutes(a) = %+v\nwant %+v", routes, want)
	}
	routes, err = s.ExitRoutes(ctx, "b")
	must(t, err)
	if len(routes) != 1 || routes[0].ExitDeviceID != "c" || routes[0].ExitHost != 1 || routes[0].NetworkID != "n1" {
		t.Fatalf("ExitRoutes(b) = %+v", routes)
	}
	routes, err = s.ExitRoutes(ctx, "unknown")
	must(t, err)
	if len(routes) != 0 {
		t.Fatalf("ExitRoutes(unknown) = %+v", routes)
	}
	// Memberships answers ExitRoutes and SecretVersions in one query.
	for _, dev := range []string{"a", "b", "c", "unknown"} {
		wantRoutes, err := s.ExitRoutes(ctx, dev)
		must(t, err)
		wantVersions, err := s.SecretVersions(ctx, dev)
		must(t, err)
		gotRoutes, gotVersions, err := s.Memberships(ctx, dev)
		must(t, err)
		if !slices.Equal(gotRoutes, wantRoutes) || !slices.Equal(gotVersions, wantVersions) {
			t.Fatalf("Memberships(%s) = %+v, %+v\nwant %+v, %+v", dev, gotRoutes, gotVersions, wantRoutes, wantVersions)
		}
		if dev != "unknown" && len(gotVersions) != 3 {
			t.Fatalf("Memberships(%s) versions = %+v, want the 3 networks", dev, gotVersions)
		}
	}
}

func testLeaveClearsSelection(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	for _, n := range []control.Network{n1, n2} {
		for _, d := range []string{"a", "b", "c"} {
			join(t, s, n, d)
		}
		must(t, s.SelectExitNode(ctx, n.ID, "a", "b"))
		must(t, s.SelectExitNode(ctx, n.ID, "c", "b"))
	}
	must(t, s.Leave(ctx, "n1", "b", ""))
	for _, d := range []string{"a", "c"} {
		if m := membership(t, s, "n1", d); m.ExitNodeID != "" {
			t.Fatalf("n1/%s still selects the leaver: %q", d, m.ExitNodeID)
		}
		if m := membership(t, s, "n2", d); m.ExitNodeID != "b" {
			t.Fatalf("n2/%s selection changed by leaving n1: %q", d, m.ExitNodeID)
		}
	}
	routes, err := s.ExitRoutes(ctx, "a")
	must(t, err)
	if len(routes) != 1 || routes[0].NetworkID != "n2" {
		t.Fatalf("ExitRoutes(a) = %+v, want only n2", routes)
	}
}

// A selection made while its exit node leaves (or is deleted) concurrently
// must not survive pointing at a non-member.
func testSelectLeaveRace(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	join(t, s, n, "a")
	for i := range 60 {
		b := fmt.Sprintf("b%02d", i)
		addDevice(t, s, "u1", b)
		join(t, s, n, b)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; _ = s.SelectExitNode(ctx, n.ID, "a", b) })
		if i%2 == 0 {
			wg.Go(func() { <-start; _ = s.Leave(ctx, n.ID, b, "") })
		} else {
			wg.Go(func() { <-start; _ = s.DeleteDevice(ctx, b, noRotate) })
		}
		close(start)
		wg.Wait()
		if m := membership(t, s, n.ID, "a"); m.ExitNodeID != "" {
			if _, err := s.Membership(ctx, n.ID, m.ExitNodeID); err != nil {
				t.Fatalf("round %d: a selects %q, which is no member: %v", i, m.ExitNodeID, err)
			}
			must(t, s.SelectExitNode(ctx, n.ID, "a", ""))
		}
	}
}

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

// ---- epoch ----

func testEpoch(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24")
	for _, d := range []string{"a", "b", "c"} {
		addDevice(t, s, "u1", d)
	}
	last := epoch(t, s)
	if last < 1 {
		t.Fatalf("initial epoch %d", last)
	}
	step := func(what string, fn func() error) {
		t.Helper()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := epoch(t, s)
		if got <= last {
			t.Fatalf("epoch %d after %s, want > %d", got, what, last)
		}
		last = got
	}
	alloc := func(used []uint32) (uint32, error) { return ipam.Allocate(n.Range, used) }
	step("join a", func() error { _, _, err := s.Join(ctx, n.ID, "a", t0, alloc); return err })
	step("join b", func() error { _, _, err := s.Join(ctx, n.ID, "b", t0, alloc); return err })
	step("join c", func() error { _, _, err := s.Join(ctx, n.ID, "c", t0, alloc); return err })
	step("join c n2", func() error { _, _, err := s.Join(ctx, n2.ID, "c", t0, alloc); return err })
	step("enable exit", func() error { return s.SetExitEnabled(ctx, n.ID, "b", true) })
	step("select exit", func() error { return s.SelectExitNode(ctx, n.ID, "a", "b") })
	step("clear exit", func() error { return s.SelectExitNode(ctx, n.ID, "a", "") })
	step("disable exit", func() error { return s.SetExitEnabled(ctx, n.ID, "b", false) })
	step("leave", func() error { return s.Leave(ctx, n.ID, "b", "") })
	step("delete device", func() error { return s.DeleteDevice(ctx, "c", noRotate) })
	step("delete network", func() error { return s.DeleteNetwork(ctx, n2.ID) })

	// Reads leave it alone.
	_, _ = s.Members(ctx, n.ID)
	_, _ = s.Membership(ctx, n.ID, "a")
	_, _ = s.DeviceMemberships(ctx, "a")
	_, _ = s.ExitRoutes(ctx, "a")
	_, _ = s.ListNetworks(ctx, "")
	_, _ = s.NetworkByID(ctx, n.ID)
	_, _ = s.ListDevices(ctx, "")
	_, _ = s.DeviceByID(ctx, "a")
	_, _ = s.DeviceByHardware(ctx, "u1", "hw-a")
	_, _ = s.ListUsers(ctx)
	_, _ = s.UserByID(ctx, "u1")
	if got := epoch(t, s); got != last {
		t.Fatalf("epoch %d after reads, want %d", got, last)
	}
	// So does an idempotent re-join.
	if _, created, err := s.Join(ctx, n.ID, "a", t0, alloc); err != nil || created {
		t.Fatalf("re-join: %v %v", created, err)
	}
	if got := epoch(t, s); got != last {
		t.Fatalf("epoch %d after idempotent join, want %d", got, last)
	}
}

func testEpochFailure(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n := addNetwork(t, s, "u1", "n1", "100.66.1.0/24")
	addDevice(t, s, "u1", "a")
	join(t, s, n, "a")
	e := epoch(t, s)
	for what, err := range map[string]error{
		"SetExitEnabled":  s.SetExitEnabled(ctx, n.ID, "zz", true),
		"SelectExitNode":  s.SelectExitNode(ctx, n.ID, "zz", ""),
		"SelectExitNode2": s.SelectExitNode(ctx, n.ID, "a", "zz"),
		"Leave":           s.Leave(ctx, n.ID, "zz", "v1:x"),
		"DeleteDevice":    s.DeleteDevice(ctx, "zz", noRotate),
		"DeleteNetwork":   s.DeleteNetwork(ctx, "zz"),
	} {
		if !errors.Is(err, control.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
	_, _, err := s.Join(ctx, n.ID, "zz", t0, func([]uint32) (uint32, error) { return 0, ipam.ErrExhausted })
	wantErr(t, err, ipam.ErrExhausted)
	if got := epoch(t, s); got != e {
		t.Fatalf("epoch %d after failed writes, want %d", got, e)
	}
}

// ---- migrations ----

func testMigrate(t *testing.T, s *store.Store) {
	db := s.DB()
	count := func() int {
		t.Helper()
		var n int
		must(t, db.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE product = 'edge'`).Scan(&n))
		return n
	}
	files, err := migrationFiles(string(db.Dialect))
	must(t, err)
	if got := count(); got != len(files) || got == 0 {
		t.Fatalf("%d migrations recorded, want %d", got, len(files))
	}
	addUser(t, s, "u1")
	e := epoch(t, s)
	// Idempotent: New (and so Migrate) again changes nothing.
	for range 2 {
		if _, err := store.New(ctx, db); err != nil {
			t.Fatalf("migrating again: %v", err)
		}
	}
	if got := count(); got != len(files) {
		t.Fatalf("%d migrations recorded after re-running, want %d", got, len(files))
	}
	if got := epoch(t, s); got != e {
		t.Fatalf("epoch reset to %d by re-migrating (was %d)", got, e)
	}
	if _, err := s.UserByID(ctx, "u1"); err != nil {
		t.Fatalf("data lost by re-migrating: %v", err)
	}

	// A database migrated by a newer binary is refused.
	_, err = db.Exec(ctx, `INSERT INTO schema_migrations (product, version, name, applied_at) VALUES ('edge', '99991231235959', 'future', 0)`)
	must(t, err)
	if _, err := store.New(ctx, db); err == nil {
		t.Fatal("store.New accepted a database with an unknown migration")
	}
	// Another product's versions are not ours to judge.
	_, err = db.Exec(ctx, `DELETE FROM schema_migrations WHERE version = '99991231235959'`)
	must(t, err)
	_, err = db.Exec(ctx, `INSERT INTO schema_migrations (product, version, name, applied_at) VALUES ('route', '99991231235959', 'other', 0)`)
	must(t, err)
	if _, err := store.New(ctx, db); err != nil {
		t.Fatalf("another product's migration blocked edge: %v", err)
	}
}

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
