package control_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/presence"
	"github.com/omniedge/omni/internal/edge/server/session"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// notices records the networks announced as changed.
type notices struct {
	mu  sync.Mutex
	ids []string
}

func (n *notices) Publish(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ids = append(n.ids, id)
	return nil
}

// take returns the networks announced since the last take.
func (n *notices) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.ids
	n.ids = nil
	return out
}

// keyFx is a Service on SQLite with a fake clock, recording its network
// notices, and one user with a security key.
type keyFx struct {
	t      *testing.T
	ctx    context.Context
	clk    *clock.Fake
	events *notices
	svc    *control.Service
	user   control.User
	key    string // the user's security key
}

func newKeyFx(t *testing.T, o control.Options) *keyFx {
	t.Helper()
	ctx := t.Context()
	db, err := sqldb.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	f := &keyFx{t: t, ctx: ctx, clk: clock.NewFake(time.Date(2026, 12, 13, 10, 0, 0, 0, time.UTC)), events: &notices{}}
	f.svc, err = control.New(control.Deps{Store: st, Presence: presence.NewMemory(f.clk, time.Hour), Sessions: session.NewMemory(f.clk),
		Clock: f.clk, Log: logging.Discard(), MasterKey: make([]byte, 32), Events: f.events}, o)
	if err != nil {
		t.Fatal(err)
	}
	if f.user, err = f.svc.CreateUser(ctx, "keys@example.com", "a-long-password", "pro"); err != nil {
		t.Fatal(err)
	}
	f.key = f.newSecurityKey()
	return f
}

func (f *keyFx) newSecurityKey() string {
	f.t.Helper()
	raw, _, err := f.svc.CreateSecurityKey(f.ctx, f.user.ID, "k", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// login starts a login session with a security key.
func (f *keyFx) login(key string) control.Principal {
	f.t.Helper()
	pair, err := f.svc.LoginSecurityKey(f.ctx, key)
	if err != nil {
		f.t.Fatal(err)
	}
	p, err := f.svc.Authenticate(pair.Token)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// device registers a device with a fresh key as p.
func (f *keyFx) device(p control.Principal, hw string) control.Device {
	f.t.Helper()
	d, _, err := f.svc.RegisterDevice(f.ctx, p, hw, hw, "linux", wgkey.Key{byte(len(hw)), hw[len(hw)-1]}.String())
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *keyFx) network(p control.Principal, name string, life time.Duration) control.Network {
	f.t.Helper()
	n, err := f.svc.CreateNetwork(f.ctx, p, name, "", "")
	if err != nil {
		f.t.Fatal(err)
	}
	if n, err = f.svc.UpdateNetwork(f.ctx, p, n.ID, control.NetworkPatch{KeyExpiry: &life}); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *keyFx) join(p control.Principal, networkID, deviceID string) {
	f.t.Helper()
	if _, err := f.svc.Join(f.ctx, p, networkID, deviceID, ""); err != nil {
		f.t.Fatal(err)
	}
}

// bound returns the ids of the members the nucleus admits.
func (f *keyFx) bound(networkID string) []string {
	f.t.Helper()
	nn, err := f.svc.NucleusNetwork(f.ctx, networkID)
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, m := range nn.Members {
		ids = append(ids, m.DeviceID)
	}
	slices.Sort(ids)
	return ids
}

// expired returns each member's key_expired.
func (f *keyFx) expired(p control.Principal, networkID string) map[string]bool {
	f.t.Helper()
	ms, err := f.svc.Members(f.ctx, p, networkID)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		out[m.DeviceID] = m.KeyExpired
	}
	return out
}

func sorted(ids ...string) []string { slices.Sort(ids); return ids }

// A member whose key is older than the network's lifetime is expired: the
// nucleus no longer admits it, the member list says so, and ExpireKeys
// announces the network once, when the key's time comes (and says when
// the next one does). A new key brings the member back.
func TestKeyLifetimeExpiresMembers(t *testing.T) {
	t.Parallel()
	f := newKeyFx(t, control.DefaultOptions())
	p := f.login(f.key)
	home := f.network(p, "home", time.Hour)
	lab := f.network(p, "lab", 0)
	a := f.device(p, "hw-a")
	f.clk.Advance(30 * time.Minute)
	b := f.device(p, "hw-b")
	for _, n := range []string{home.ID, lab.ID} {
		f.join(p, n, a.ID)
		f.join(p, n, b.ID)
	}
	f.events.take()

	next, err := f.svc.ExpireKeys(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := a.KeySetAt.Add(time.Hour); !next.Equal(want) {
		t.Fatalf("next expiry %v, want a's key at %v", next, want)
	}
	f.clk.Advance(29 * time.Minute) // a's key is 59 minutes old
	if _, err := f.svc.ExpireKeys(f.ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.events.take(); len(got) != 0 {
		t.Fatalf("announced %v before any key expired", got)
	}
	if got := f.bound(home.ID); !slices.Equal(got, sorted(a.ID, b.ID)) {
		t.Fatalf("bound %v, want both", got)
	}

	f.clk.Advance(2 * time.Minute) // a: 61 minutes, b: 31 minutes
	next, err = f.svc.ExpireKeys(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.events.take(); !slices.Equal(got, []string{home.ID}) {
		t.Fatalf("announced %v, want home alone", got)
	}
	if want := b.KeySetAt.Add(time.Hour); !next.Equal(want) {
		t.Fatalf("next expiry %v, want b's key at %v", next, want)
	}
	if got := f.bound(home.ID); !slices.Equal(got, []string{b.ID}) {
		t.Fatalf("bound in home %v, want b alone", got)
	}
	if got := f.bound(lab.ID); len(got) != 2 {
		t.Fatalf("bound in lab (no lifetime) %v, want both", got)
	}
	if got := f.expired(p, home.ID); !got[a.ID] || got[b.ID] {
		t.Fatalf("key_expired in home %v, want a only", got)
	}
	if got := f.expired(p, lab.ID); got[a.ID] || got[b.ID] {
		t.Fatalf("key_expired in lab %v, want none", got)
	}
	// Announced once.
	if _, err := f.svc.ExpireKeys(f.ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.events.take(); len(got) != 0 {
		t.Fatalf("announced again: %v", got)
	}

	// The heartbeat tells a when its key expires (has expired) in home.
	hb, err := f.svc.Heartbeat(f.ctx, p, "hw-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(hb.KeyExpiries) != 1 || hb.KeyExpiries[0].NetworkID != home.ID || !hb.KeyExpiries[0].At.Equal(a.KeySetAt.Add(time.Hour)) ||
		!hb.KeySetAt.Equal(a.KeySetAt) || !hb.KeyExpiredAt.IsZero() {
		t.Fatalf("heartbeat key expiry: %+v", hb)
	}

	// A renewed key is admitted again, and its networks are announced.
	renewed, _, err := f.svc.RegisterDevice(f.ctx, p, "hw-a", "hw-a", "linux", wgkey.Key{42}.String())
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.KeySetAt.Equal(f.clk.Now()) {
		t.Fatalf("renewed key set at %v, want now %v", renewed.KeySetAt, f.clk.Now())
	}
	if got := f.events.take(); !slices.Equal(sorted(got...), sorted(home.ID, lab.ID)) {
		t.Fatalf("announced %v after a new key, want both networks", got)
	}
	if got := f.bound(home.ID); !slices.Equal(got, sorted(a.ID, b.ID)) {
		t.Fatalf("bound %v after renewal, want both", got)
	}
	hb, err = f.svc.Heartbeat(f.ctx, p, "hw-a", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(hb.KeyExpiries) != 1 || !hb.KeyExpiries[0].At.Equal(f.clk.Now().Add(time.Hour)) {
		t.Fatalf("heartbeat after renewal: %+v", hb.KeyExpiries)
	}

	// Shortening the lifetime expires the older keys at once: the network
	// is announced by the change itself.
	f.clk.Advance(50 * time.Minute) // b: 81 minutes, a's new key: 50 minutes
	if _, err := f.svc.ExpireKeys(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.events.take() // b's expiry in home
	short, off := time.Hour, time.Duration(0)
	if _, err := f.svc.UpdateNetwork(f.ctx, p, lab.ID, control.NetworkPatch{KeyExpiry: &short}); err != nil {
		t.Fatal(err)
	}
	if got := f.events.take(); !slices.Equal(got, []string{lab.ID}) {
		t.Fatalf("announced %v after setting lab's lifetime, want lab", got)
	}
	if got := f.bound(lab.ID); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("bound in lab %v after a 1h lifetime, want a (b's key is 81 minutes old)", got)
	}
	if _, err := f.svc.UpdateNetwork(f.ctx, p, lab.ID, control.NetworkPatch{KeyExpiry: &off}); err != nil {
		t.Fatal(err)
	}
	if got := f.bound(lab.ID); len(got) != 2 {
		t.Fatalf("bound in lab %v with expiry off again, want both", got)
	}
}

// Run's loop announces a key's expiry by itself, following the injected
// clock: it wakes at the next expiry (here, polls every 10 ms, the fake
// clock not driving real timers).
func TestKeyExpiryLoop(t *testing.T) {
	t.Parallel()
	o := control.DefaultOptions()
	o.KeyCheckMax = 10 * time.Millisecond
	f := newKeyFx(t, o)
	p := f.login(f.key)
	home := f.network(p, "home", 2*time.Hour)
	d := f.device(p, "hw-a")
	f.join(p, home.ID, d.ID)
	f.events.take()
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // a few turns of the loop
	if got := f.events.take(); slices.Contains(got, home.ID) {
		t.Fatalf("home announced before any key expired: %v", got)
	}
	f.clk.Advance(2*time.Hour + time.Second)
	var seen []string
	testenv.Eventually(t, "the loop to announce home", func() bool {
		seen = append(seen, f.events.take()...)
		return slices.Contains(seen, home.ID)
	})
	if got := f.bound(home.ID); len(got) != 0 {
		t.Fatalf("bound %v after the expiry, want none", got)
	}
}

// The owner's expiry works at once in every network of the device,
// revokes the login sessions the device used, and a new key is then
// accepted only from a login made since, with a credential made since:
// not from a session that was live before (even one the device did not
// use), not from a new login with a security key that predates the
// expiry (a daemon holding one would log in again by itself), and
// re-registering the expired key leaves it expired.
func TestOwnerExpiryNeedsANewLogin(t *testing.T) {
	t.Parallel()
	f := newKeyFx(t, control.DefaultOptions())
	owner := f.login(f.key)    // the dashboard of the owner, say
	devLogin := f.login(f.key) // the device's daemon
	home := f.network(owner, "home", 0)
	lab := f.network(owner, "lab", 0)
	d := f.device(devLogin, "hw-d")
	other := f.device(owner, "hw-o")
	for _, n := range []string{home.ID, lab.ID} {
		f.join(devLogin, n, d.ID)
		f.join(owner, n, other.ID)
	}
	if _, err := f.svc.Heartbeat(f.ctx, devLogin, "hw-d", false); err != nil {
		t.Fatal(err)
	}
	f.events.take()

	f.clk.Advance(time.Minute)
	got, err := f.svc.ExpireDeviceKey(f.ctx, owner, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	expiredAt := f.clk.Now()
	if !got.KeyExpiredAt.Equal(expiredAt) {
		t.Fatalf("expired at %v, want now %v", got.KeyExpiredAt, expiredAt)
	}
	if ids := f.events.take(); !slices.Equal(sorted(ids...), sorted(home.ID, lab.ID)) {
		t.Fatalf("announced %v, want both networks at once", ids)
	}
	for _, n := range []string{home.ID, lab.ID} {
		if b := f.bound(n); !slices.Equal(b, []string{other.ID}) {
			t.Fatalf("bound in %s: %v, want the other device alone", n, b)
		}
		if e := f.expired(owner, n); !e[d.ID] || e[other.ID] {
			t.Fatalf("key_expired in %s: %v", n, e)
		}
	}
	// The device's session is revoked; the owner's is not (it did not act
	// for the device).
	if !f.revoked(devLogin) {
		t.Fatal("the device's login session is not revoked")
	}
	if f.revoked(owner) {
		t.Fatal("the owner's login session was revoked")
	}
	hb, err := f.svc.Heartbeat(f.ctx, owner, "hw-d", false)
	if err != nil {
		t.Fatal(err)
	}
	if !hb.KeyExpiredAt.Equal(expiredAt) || len(hb.KeyExpiries) != 2 {
		t.Fatalf("heartbeat after the owner's expiry: %+v", hb)
	}

	newKey := wgkey.Key{99}.String()
	refused := func(p control.Principal, why string) {
		t.Helper()
		_, _, err := f.svc.RegisterDevice(f.ctx, p, "hw-d", "hw-d", "linux", newKey)
		if control.KindOf(err) != control.KindForbidden {
			t.Fatalf("%s: registering a new key: %v, want forbidden", why, err)
		}
		if _, err := f.svc.Join(f.ctx, p, home.ID, d.ID, newKey); control.KindOf(err) != control.KindForbidden {
			t.Fatalf("%s: joining with a new key: %v, want forbidden", why, err)
		}
	}
	f.clk.Advance(time.Minute)
	refused(owner, "a session older than the expiry")
	refused(f.login(f.key), "a new login with a security key older than the expiry")
	// The same key: accepted, still expired.
	same, _, err := f.svc.RegisterDevice(f.ctx, owner, "hw-d", "hw-d", "linux", d.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !same.KeyExpiredAt.Equal(expiredAt) || len(f.bound(home.ID)) != 1 {
		t.Fatalf("re-registering the expired key: %+v, bound %v", same, f.bound(home.ID))
	}

	// A security key created since: the new key is taken, in every network.
	fresh := f.login(f.newSecurityKey())
	renewed, _, err := f.svc.RegisterDevice(f.ctx, fresh, "hw-d", "hw-d", "linux", newKey)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.PublicKey != newKey || !renewed.KeyExpiredAt.IsZero() || !renewed.KeySetAt.Equal(f.clk.Now()) {
		t.Fatalf("renewed: %+v", renewed)
	}
	for _, n := range []string{home.ID, lab.ID} {
		if b := f.bound(n); len(b) != 2 {
			t.Fatalf("bound in %s after the new key: %v", n, b)
		}
	}
}

// revoked reports whether p's login session is refused.
func (f *keyFx) revoked(p control.Principal) bool {
	f.t.Helper()
	ls, err := f.svc.ListLoginSessions(f.ctx, p)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == p.Family {
			return false
		}
	}
	return true
}

// Expiring a key is the owner's: another user's device is forbidden, an
// unknown one not found, a device without a key has none to expire.
func TestExpireDeviceKeyChecks(t *testing.T) {
	t.Parallel()
	f := newKeyFx(t, control.DefaultOptions())
	p := f.login(f.key)
	d := f.device(p, "hw-a")
	bare, _, err := f.svc.RegisterDevice(f.ctx, p, "bare", "hw-bare", "linux", "")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := f.svc.CreateUser(f.ctx, "mallory@example.com", "a-long-password", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p    control.Principal
		id   string
		want control.Kind
	}{
		{control.Principal{UserID: mallory.ID}, d.ID, control.KindForbidden},
		{p, "dev_nope", control.KindNotFound},
		{p, bare.ID, control.KindInvalid},
	} {
		if _, err := f.svc.ExpireDeviceKey(f.ctx, tc.p, tc.id); control.KindOf(err) != tc.want {
			t.Errorf("ExpireDeviceKey(%s as %s): %v, want kind %d", tc.id, tc.p.UserID, err, tc.want)
		}
	}
	if got, _, err := f.svc.GetDevice(f.ctx, p, d.ID); err != nil || !got.KeyExpiredAt.IsZero() {
		t.Fatalf("device after refused expiries: %+v %v", got, err)
	}
}

func TestParseKeyExpiry(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, " 0 ": 0, "1h": time.Hour, "720h": 720 * time.Hour, "90d": 90 * 24 * time.Hour,
		"36h30m": 36*time.Hour + 30*time.Minute, "3650d": 3650 * 24 * time.Hour,
	} {
		got, err := control.ParseKeyExpiry(in)
		if err != nil || got != want {
			t.Errorf("ParseKeyExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, err := control.ParseKeyExpiry(control.FormatKeyExpiry(got)); err != nil || back != got {
			t.Errorf("FormatKeyExpiry(%v) = %q does not read back: %v %v", got, control.FormatKeyExpiry(got), back, err)
		}
	}
	for _, in := range []string{"abc", "-1h", "-2d", "30m", "59m59s", "1", "1.5d", "d", "3651d", "87601h", "99999999999999d", "1h30", "0x10h"} {
		if got, err := control.ParseKeyExpiry(in); control.KindOf(err) != control.KindInvalid {
			t.Errorf("ParseKeyExpiry(%q) = %v, %v; want invalid", in, got, err)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0", time.Hour: "1h", 720 * time.Hour: "720h", 90*time.Minute + time.Hour: "2h30m", time.Hour + 30*time.Second: "1h0m30s",
	} {
		if got := control.FormatKeyExpiry(d); got != want {
			t.Errorf("FormatKeyExpiry(%v) = %q, want %q", d, got, want)
		}
	}
}
