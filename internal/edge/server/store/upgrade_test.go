package store_test

import (
	"io/fs"
	"net/netip"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store/migrations"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// TestUpgradeKeepsData migrates a database holding networks, memberships
// and refresh tokens from the first schema to the current one: nothing is
// lost (the ip_range rename must not cascade into memberships), existing
// families become login sessions, and ranges become per owner.
func TestUpgradeKeepsData(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "omni.db") }},
		{"postgres", func(t *testing.T) string { return testenv.Postgres(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, tc.dsn(t))
			dir := string(db.Dialect)
			first := dir + "/20261122000000_init.sql"
			body, err := fs.ReadFile(migrations.FS, first)
			must(t, err)
			must(t, sqldb.Migrate(ctx, db, "edge", fstest.MapFS{first: {Data: body}}))
			for _, q := range []string{
				`INSERT INTO edge_users (id, email, password_hash, plan, created_at) VALUES ('u1', 'a@example.com', 'x', 'free', 1), ('u2', 'b@example.com', 'x', 'free', 1)`,
				`INSERT INTO edge_devices (id, user_id, hardware_uuid, name, platform, created_at) VALUES ('d1', 'u1', 'hw', 'd', 'linux', 1)`,
				`INSERT INTO edge_networks (id, owner_id, name, ip_range, ipv6_range, secret_sealed, created_at) VALUES ('n1', 'u1', 'net', '100.66.0.0/24', 'fd11:2233:4455::/120', 's', 1)`,
				`INSERT INTO edge_memberships (network_id, device_id, host, joined_at) VALUES ('n1', 'd1', 1, 1)`,
				`INSERT INTO edge_refresh_tokens (id, family_id, user_id, key_id, token_hash, created_at, expires_at, used_at) VALUES ('r1', 'fam_1', 'u1', NULL, 'h1', 10, 9999999999999, 20), ('r2', 'fam_1', 'u1', NULL, 'h2', 20, 9999999999999, NULL)`,
			} {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			s := newStore(t, db)
			n, err := s.NetworkByID(ctx, "n1")
			must(t, err)
			if n.Range.String() != "100.66.0.0/24" || n.OwnerID != "u1" {
				t.Fatalf("network after upgrade = %+v", n)
			}
			ms, err := s.Members(ctx, "n1")
			must(t, err)
			if len(ms) != 1 || ms[0].DeviceID != "d1" {
				t.Fatalf("members after upgrade = %+v", ms)
			}
			ls, err := s.LoginSession(ctx, "fam_1")
			must(t, err)
			if ls.UserID != "u1" || ls.Method != control.MethodBrowser || ls.CreatedAt.UnixMilli() != 10 || !ls.RevokedAt.IsZero() {
				t.Fatalf("backfilled login session = %+v", ls)
			}
			// Another owner may now take the same range; the owner may not.
			r := netip.MustParsePrefix("100.66.0.0/24")
			_, err = s.CreateNetwork(ctx, control.Network{ID: "n2", OwnerID: "u2", Name: "b", Range: r, Range6: ula(t, 24), CreatedAt: t0}, 0, noPick(t))
			must(t, err)
			_, err = s.CreateNetwork(ctx, control.Network{ID: "n3", OwnerID: "u1", Name: "c", Range: r, Range6: ula(t, 24), CreatedAt: t0}, 0, noPick(t))
			wantErr(t, err, control.ErrOverlap)
		})
	}
}
