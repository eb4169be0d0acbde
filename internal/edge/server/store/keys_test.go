package store_test

import (
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/edge/server/store/migrations"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// ---- device key lifetimes ----

// registerKey registers device id of u1 with key, recorded at set.
func registerKey(t *testing.T, s *store.Store, id, key string, set time.Time) control.Device {
	t.Helper()
	d, _, err := s.RegisterDevice(ctx, control.Device{ID: id, UserID: "u1", HardwareUUID: "hw-" + id, Name: id, Platform: "linux",
		CreatedAt: t0, PublicKey: key, KeySetAt: set}, 0)
	must(t, err)
	return d
}

// A device's key is recorded with its time; the same key again keeps it,
// a new key gets a new time and clears the owner's expiry; the owner's
// expiry is stored and advances the epoch.
func testDeviceKeyTimes(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	d := registerKey(t, s, "a", "key-a-1", at(time.Minute))
	if !d.KeySetAt.Equal(at(time.Minute)) || !d.KeyExpiredAt.IsZero() {
		t.Fatalf("new device: key set at %v, expired at %v; want %v and never", d.KeySetAt, d.KeyExpiredAt, at(time.Minute))
	}
	if none := addDevice(t, s, "u1", "nokey"); !none.KeySetAt.IsZero() {
		t.Fatalf("a device without a key has a key time %v", none.KeySetAt)
	}
	// Without KeySetAt, a new key counts from the device's creation.
	if d := registerKey(t, s, "c", "key-c", time.Time{}); !d.KeySetAt.Equal(t0) {
		t.Fatalf("key set at %v, want the creation time %v", d.KeySetAt, t0)
	}

	e := epoch(t, s)
	d = registerKey(t, s, "a", "key-a-1", at(time.Hour))
	if !d.KeySetAt.Equal(at(time.Minute)) {
		t.Fatalf("the same key again moved its time to %v", d.KeySetAt)
	}
	if got := epoch(t, s); got != e {
		t.Fatalf("epoch %d after registering the same key, want %d", got, e)
	}

	must(t, s.ExpireDeviceKey(ctx, "a", at(2*time.Hour)))
	if got := epoch(t, s); got <= e {
		t.Fatalf("epoch %d after the owner's expiry, want > %d", got, e)
	}
	stored, err := s.DeviceByID(ctx, "a")
	must(t, err)
	if !stored.KeyExpiredAt.Equal(at(2*time.Hour)) || !stored.KeySetAt.Equal(at(time.Minute)) {
		t.Fatalf("after the owner's expiry: %+v", stored)
	}
	// The same key again stays expired.
	if d := registerKey(t, s, "a", "key-a-1", at(3*time.Hour)); !d.KeyExpiredAt.Equal(at(2 * time.Hour)) {
		t.Fatalf("re-registering the expired key cleared its expiry: %+v", d)
	}
	// A new key: recorded now, no longer expired.
	e = epoch(t, s)
	d = registerKey(t, s, "a", "key-a-2", at(4*time.Hour))
	if d.PublicKey != "key-a-2" || !d.KeySetAt.Equal(at(4*time.Hour)) || !d.KeyExpiredAt.IsZero() {
		t.Fatalf("new key: %+v", d)
	}
	if got := epoch(t, s); got <= e {
		t.Fatalf("epoch %d after a new key, want > %d", got, e)
	}
	stored, err = s.DeviceByID(ctx, "a")
	must(t, err)
	if !stored.KeySetAt.Equal(at(4*time.Hour)) || !stored.KeyExpiredAt.IsZero() {
		t.Fatalf("stored after a new key: %+v", stored)
	}

	// A device without a key has nothing to expire; an unknown one is
	// not found.
	must(t, s.ExpireDeviceKey(ctx, "nokey", at(time.Hour)))
	if d, err := s.DeviceByID(ctx, "nokey"); err != nil || !d.KeyExpiredAt.IsZero() {
		t.Fatalf("device without a key: %+v %v", d, err)
	}
	wantErr(t, s.ExpireDeviceKey(ctx, "zz", at(time.Hour)), control.ErrNotFound)
}

// A network's key lifetime is stored and read back by every read that
// carries it, the member reads carry the devices' key times, and
// KeyExpiries finds the lifetimes that end in a window and the next one.
func testKeyExpiries(t *testing.T, s *store.Store) {
	addUser(t, s, "u1")
	n1 := addNetwork(t, s, "u1", "n1", "100.66.1.0/24") // 1h
	n2 := addNetwork(t, s, "u1", "n2", "100.66.2.0/24") // no lifetime
	n3 := addNetwork(t, s, "u1", "n3", "100.66.3.0/24") // 2h
	e := epoch(t, s)
	n1.KeyExpiry, n3.KeyExpiry = time.Hour, 2*time.Hour
	must(t, s.UpdateNetwork(ctx, n1))
	must(t, s.UpdateNetwork(ctx, n3))
	if got := epoch(t, s); got <= e {
		t.Fatalf("epoch %d after changing lifetimes, want > %d", got, e)
	}
	got, err := s.NetworkByID(ctx, "n1")
	must(t, err)
	if got.KeyExpiry != time.Hour {
		t.Fatalf("stored lifetime %v, want 1h", got.KeyExpiry)
	}
	list, err := s.ListNetworks(ctx, "u1")
	must(t, err)
	if len(list) != 3 || list[0].KeyExpiry != time.Hour || list[1].KeyExpiry != 0 || list[2].KeyExpiry != 2*time.Hour {
		t.Fatalf("listed lifetimes: %+v", list)
	}

	registerKey(t, s, "a", "key-a", t0)
	registerKey(t, s, "b", "key-b", at(30*time.Minute))
	addDevice(t, s, "u1", "c") // no key
	registerKey(t, s, "x", "key-x", t0)
	must(t, s.ExpireDeviceKey(ctx, "x", at(time.Minute))) // by hand: not a lifetime's end
	for _, n := range []control.Network{n1, n2, n3} {
		for _, d := range []string{"a", "b", "c", "x"} {
			join(t, s, n, d)
		}
	}

	keys, err := s.MemberKeys(ctx, "n1")
	must(t, err)
	byID := map[string]control.MemberKey{}
	for _, k := range keys {
		byID[k.DeviceID] = k
	}
	if k := byID["b"]; !k.KeySetAt.Equal(at(30*time.Minute)) || !k.KeyExpiredAt.IsZero() || k.PublicKey != "key-b" {
		t.Fatalf("member key b: %+v", k)
	}
	if k := byID["x"]; !k.KeyExpiredAt.Equal(at(time.Minute)) {
		t.Fatalf("member key x: %+v", k)
	}
	if k := byID["c"]; !k.KeySetAt.IsZero() || k.PublicKey != "" {
		t.Fatalf("member key c: %+v", k)
	}
	_, devs, err := s.MemberDevices(ctx, "n1")
	must(t, err)
	for _, d := range devs {
		if d.ID == "x" && (!d.KeySetAt.Equal(t0) || !d.KeyExpiredAt.Equal(at(time.Minute))) {
			t.Fatalf("member device x: %+v", d)
		}
	}
	lifetimes := func(vs []control.SecretVersion) map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, v := range vs {
			m[v.NetworkID] = v.KeyExpiry
		}
		return m
	}
	want := map[string]time.Duration{"n1": time.Hour, "n2": 0, "n3": 2 * time.Hour}
	vs, err := s.SecretVersions(ctx, "a")
	must(t, err)
	if got := lifetimes(vs); !maps.Equal(got, want) {
		t.Fatalf("SecretVersions lifetimes %v, want %v", got, want)
	}
	_, vs, err = s.Memberships(ctx, "a")
	must(t, err)
	if got := lifetimes(vs); !maps.Equal(got, want) {
		t.Fatalf("Memberships lifetimes %v, want %v", got, want)
	}
	hb, _, err := s.DeviceBySession(ctx, "u1", "hw-b", "")
	must(t, err)
	if !hb.KeySetAt.Equal(at(30 * time.Minute)) {
		t.Fatalf("DeviceBySession key time %v", hb.KeySetAt)
	}

	// Ends: a in n1 at 1h, b in n1 at 1h30, a in n3 at 2h, b in n3 at 2h30.
	for _, tc := range []struct {
		after, until time.Duration
		due          []string
		next         time.Duration // 0: none
	}{
		{0, 59 * time.Minute, nil, time.Hour},
		{0, time.Hour, []string{"n1"}, 90 * time.Minute},
		{time.Hour, 89 * time.Minute, nil, 90 * time.Minute},
		{time.Hour, 2 * time.Hour, []string{"n1", "n3"}, 150 * time.Minute},
		{2 * time.Hour, 3 * time.Hour, []string{"n3"}, 0},
		{3 * time.Hour, 4 * time.Hour, nil, 0},
	} {
		due, next, err := s.KeyExpiries(ctx, at(tc.after), at(tc.until))
		must(t, err)
		wantNext := time.Time{}
		if tc.next > 0 {
			wantNext = at(tc.next)
		}
		if !slices.Equal(due, tc.due) || !next.Equal(wantNext) {
			t.Errorf("KeyExpiries(%v, %v) = %v, %v; want %v, %v", tc.after, tc.until, due, next, tc.due, wantNext)
		}
	}
	// No lifetime anywhere: nothing.
	n1.KeyExpiry, n3.KeyExpiry = 0, 0
	must(t, s.UpdateNetwork(ctx, n1))
	must(t, s.UpdateNetwork(ctx, n3))
	due, next, err := s.KeyExpiries(ctx, t0, at(time.Hour))
	must(t, err)
	if len(due) != 0 || !next.IsZero() {
		t.Fatalf("without lifetimes: %v, %v", due, next)
	}
}

// The key-expiry migration records the keys registered before it as set
// at the migration (their real time is unknown), and leaves devices
// without a key without one.
func TestKeyExpiryMigrationBackfills(t *testing.T) {
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
			before := fstest.MapFS{}
			files, err := migrationFiles(dir)
			must(t, err)
			for _, f := range files {
				if strings.HasPrefix(f, "20261213010000") {
					break
				}
				body, err := fs.ReadFile(migrations.FS, dir+"/"+f)
				must(t, err)
				before[dir+"/"+f] = &fstest.MapFile{Data: body}
			}
			must(t, sqldb.Migrate(ctx, db, "edge", before))
			for _, q := range []string{
				`INSERT INTO edge_users (id, email, password_hash, plan, created_at) VALUES ('u1', 'a@example.com', 'x', 'free', 1)`,
				`INSERT INTO edge_devices (id, user_id, hardware_uuid, name, platform, created_at, public_key) VALUES ('d1', 'u1', 'hw1', 'd', 'linux', 1, 'key-1')`,
				`INSERT INTO edge_devices (id, user_id, hardware_uuid, name, platform, created_at) VALUES ('d2', 'u1', 'hw2', 'd', 'linux', 1)`,
			} {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			start := time.Now().Add(-time.Minute)
			s := newStore(t, db)
			d1, err := s.DeviceByID(ctx, "d1")
			must(t, err)
			if d1.KeySetAt.Before(start) || d1.KeySetAt.After(time.Now().Add(time.Minute)) || !d1.KeyExpiredAt.IsZero() {
				t.Fatalf("keyed device after the migration: key set at %v, expired at %v; want about now", d1.KeySetAt, d1.KeyExpiredAt)
			}
			d2, err := s.DeviceByID(ctx, "d2")
			must(t, err)
			if !d2.KeySetAt.IsZero() {
				t.Fatalf("device without a key got a key time %v", d2.KeySetAt)
			}
		})
	}
}
