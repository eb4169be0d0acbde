package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"
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
// Its tests live by resource: users_test.go, auth_test.go (security
// keys), refresh_test.go, sessions_test.go, devices_test.go,
// networks_test.go, memberships_test.go, keys_test.go (device key
// lifetimes), userservers_test.go, epoch_test.go and migrate_test.go.
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
		{"DeviceKeyTimes", testDeviceKeyTimes},
		{"KeyExpiries", testKeyExpiries},
		{"FlushPresence", testFlushPresence},
		{"CreateNetwork", testCreateNetwork},
		{"CreateNetworkLimit", testCreateNetworkLimit},
		{"CreateNetworkPick", testCreateNetworkPick},
		{"CreateNetworkOverlap", testCreateNetworkOverlap},
		{"CreateNetworkUniqueIPv6", testCreateNetworkUniqueIPv6},
		{"CreateNetworkConcurrent", testCreateNetworkConcurrent},
		{"UpdateDeleteNetwork", testUpdateDeleteNetwork},
		{"SubnetRoutes", testSubnetRoutes},
		{"Join", testJoin},
		{"JoinConcurrent", testJoinConcurrent},
		{"UserMemberships", testUserMemberships},
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
