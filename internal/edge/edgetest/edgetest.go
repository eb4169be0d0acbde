// Package edgetest runs a complete OmniEdge control plane in-process for
// tests: the real store (SQLite in a temp dir, or PostgreSQL), presence,
// sessions, limiter, Service and HTTP API behind an httptest server, a fake
// clock, and helpers that create users and logged-in API clients.
package edgetest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/server/app"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// Options change the configuration of a test server.
type Options struct {
	Postgres bool                 // use a fresh PostgreSQL schema instead of SQLite
	Redis    bool                 // share presence, sessions and limits through Redis
	Config   func(*config.Config) // adjust the configuration (rate limits are off by default)
}

// Env is a running control plane.
type Env struct {
	T       testing.TB
	URL     string
	Clock   *clock.Fake
	Config  *config.Config
	Service *control.Service
	App     *app.App
	Server  *httptest.Server
}

var seq atomic.Int64

// New starts a control plane that is stopped when t ends.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.RateLimitIP, cfg.RateLimitToken = 0, 0
	cfg.NucleusListen = ":51820"
	if o.Config != nil {
		o.Config(&cfg)
	}
	dsn := "sqlite://" + filepath.Join(cfg.DataDir, "omni.db")
	if o.Postgres {
		dsn = testenv.Postgres(t)
	}
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	var (
		rdb    *redis.Client
		prefix string
	)
	if o.Redis {
		rdb, prefix = testenv.Redis(t)
	}
	clk := clock.NewFake(time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC))
	a, err := app.New(ctx, &cfg, app.Deps{DB: db, Redis: rdb, RedisPrefix: prefix, Clock: clk, Log: logging.Discard(), MasterKey: auth.RandomBytes(32)})
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	return &Env{T: t, URL: srv.URL, Clock: clk, Config: &cfg, Service: a.Service, App: a, Server: srv}
}

// User is a test account with a security key.
type User struct {
	control.User
	Key string
}

// NewUser creates a user on plan ("" for free) with one security key.
func (e *Env) NewUser(plan string) User {
	e.T.Helper()
	ctx := context.Background()
	email := fmt.Sprintf("user%d-%d@example.com", seq.Add(1), time.Now().UnixNano())
	u, err := e.Service.CreateUser(ctx, email, "correct horse battery", plan)
	if err != nil {
		e.T.Fatalf("create user: %v", err)
	}
	key, _, err := e.Service.CreateSecurityKey(ctx, u.ID, "test", 0)
	if err != nil {
		e.T.Fatalf("create key: %v", err)
	}
	return User{User: u, Key: key}
}

// Client returns an API client logged in with u's security key.
func (e *Env) Client(u User) *client.Client {
	e.T.Helper()
	c := client.New(e.URL, e.Server.Client())
	if _, err := c.LoginSecurityKey(context.Background(), u.Key); err != nil {
		e.T.Fatalf("login: %v", err)
	}
	return c
}
