package store_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store"
)

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

	must(t, s.RenameDevice(ctx, "a", "new name", "robot-arm"))
	d, err := s.DeviceByID(ctx, "a")
	must(t, err)
	if d.Name != "new name" || d.Platform != "linux" || d.DNSName != "robot-arm" {
		t.Fatalf("after rename: %+v", d)
	}
	ds, err := s.ListDevices(ctx, "u1")
	must(t, err)
	for _, o := range ds {
		if o.ID == "a" && o.DNSName != "robot-arm" {
			t.Fatalf("listed after rename: %+v", o)
		}
	}
	wantErr(t, s.RenameDevice(ctx, "missing", "x", ""), control.ErrNotFound)

	// Tags: stored, listed, read with the members, and cleared.
	must(t, s.SetDeviceTags(ctx, "a", []string{"tag:robot", "tag:ssh"}))
	d, err = s.DeviceByID(ctx, "a")
	must(t, err)
	if !slices.Equal(d.Tags, []string{"tag:robot", "tag:ssh"}) || d.Name != "new name" {
		t.Fatalf("after tagging: %+v", d)
	}
	ds, err = s.ListDevices(ctx, "u1")
	must(t, err)
	for _, o := range ds {
		if want := map[string][]string{"a": {"tag:robot", "tag:ssh"}}[o.ID]; !slices.Equal(o.Tags, want) {
			t.Fatalf("listed %s with tags %v, want %v", o.ID, o.Tags, want)
		}
	}
	must(t, s.SetDeviceTags(ctx, "a", nil))
	d, err = s.DeviceByID(ctx, "a")
	must(t, err)
	if len(d.Tags) != 0 {
		t.Fatalf("cleared tags: %v", d.Tags)
	}
	wantErr(t, s.SetDeviceTags(ctx, "missing", []string{"tag:x"}), control.ErrNotFound)
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
