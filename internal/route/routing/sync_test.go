package routing_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// A change written by one replica reaches another replica's table.
func TestReplicasFollowTheStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.New(ctx, db, masterKey)
	if err != nil {
		t.Fatal(err)
	}
	table := router.NewTable()
	m, err := routing.New(routing.Options{Store: st, Table: table, Registry: routeapp.Registry(), SyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	// The other replica writes straight to the shared store.
	if err := st.CreateProvider(ctx, store.Provider{ID: "p", Type: "openai", BaseURL: "http://127.0.0.1:1", Enabled: true,
		Credentials: []store.Credential{{APIKey: "sk-replica-0000", Enabled: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetAlias(ctx, store.Alias{Name: "fast", Target: "p/m"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		targets, _, err := table.Resolve("fast")
		if err == nil && len(targets) == 1 && targets[0].Provider == "p" && len(table.Connections("p")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not pick up the change: %v %v", targets, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := st.DeleteProvider(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for len(table.Connections("p")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("replica kept a deleted provider")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestStoredStateSurvivesRestart(t *testing.T) {
	up := newUpstream(t, "one")
	e := newEnv(t, nil)
	e.Login()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL, "api_key": "sk-restart-key-1111"})
	e.Want(http.StatusCreated, "POST", "/api/models/alias", map[string]string{"name": "fast", "target": "acme/gpt-4o-mini"})

	cfg := config.Default()
	b, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.DB, MasterKey: masterKey, Clock: clock.Real{}, Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if conns := b.Table.Connections("acme"); len(conns) != 1 || conns[0].ID != "acme#1" {
		t.Fatalf("connections after restart = %+v", conns)
	}
	if targets, _, err := b.Table.Resolve("fast"); err != nil || len(targets) != 1 || targets[0].Model != "gpt-4o-mini" {
		t.Fatalf("alias after restart: %+v %v", targets, err)
	}
	// Another master key cannot open the credentials: the provider has no
	// usable connection, and nothing breaks.
	c, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.DB, MasterKey: []byte("another-master-key-of-32-bytes!!"), Log: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if conns := c.Table.Connections("acme"); len(conns) != 0 {
		t.Fatalf("connections under another master key = %+v", conns)
	}
}
