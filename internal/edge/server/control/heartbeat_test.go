package control_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/presence"
	"github.com/omniedge/omni/internal/edge/server/session"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// countingStore counts the device-session writes that reach the store.
type countingStore struct {
	control.Store
	writes atomic.Int64
}

func (c *countingStore) AddDeviceSession(ctx context.Context, deviceID, sessionID string) error {
	c.writes.Add(1)
	return c.Store.AddDeviceSession(ctx, deviceID, sessionID)
}

// A device's heartbeats write nothing to the database once its login
// session is recorded: not after registration with that session, not
// after a restart (a new service over the same store), and a new login
// session is recorded once.
func TestHeartbeatRecordsASessionOnce(t *testing.T) {
	t.Parallel()
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
	cs := &countingStore{Store: st}
	clk := clock.Real{}
	start := func() *control.Service {
		svc, err := control.New(control.Deps{Store: cs, Presence: presence.NewMemory(clk, time.Hour), Sessions: session.NewMemory(clk),
			Clock: clk, Log: logging.Discard(), MasterKey: make([]byte, 32)}, control.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc := start()
	u, err := svc.CreateUser(ctx, "hb@example.com", "a-long-password", "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := svc.CreateSecurityKey(ctx, u.ID, "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	login := func(svc *control.Service) control.Principal {
		pair, err := svc.LoginSecurityKey(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		p, err := svc.Authenticate(pair.Token)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := login(svc)
	if _, _, err := svc.RegisterDevice(ctx, p, "robot", "hw-1", "linux", ""); err != nil {
		t.Fatal(err)
	}
	heartbeats := func(svc *control.Service, p control.Principal, want int64, when string) {
		t.Helper()
		for range 3 {
			if _, err := svc.Heartbeat(ctx, p, "hw-1", false); err != nil {
				t.Fatal(err)
			}
		}
		if got := cs.writes.Load(); got != want {
			t.Fatalf("%s: %d device-session writes, want %d", when, got, want)
		}
	}
	heartbeats(svc, p, 1, "after registering and heartbeating with the same session")
	heartbeats(start(), p, 1, "after a restart")
	heartbeats(svc, login(svc), 2, "with a new login session")
}
