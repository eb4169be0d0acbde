// Command edgeseed fills an OmniEdge data directory with users and devices
// for the heartbeat benchmark and writes one line per device,
// "<access token>\t<hardware uuid>", for the load generator. It uses the
// same Service and master key as `omni serve`, so the tokens it prints are
// valid for a server started on that data directory.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/presence"
	"github.com/omniedge/omni/internal/edge/server/session"
	"github.com/omniedge/omni/internal/edge/server/store"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "edgeseed:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("edgeseed", flag.ContinueOnError)
	devices := fs.Int("devices", 100000, "devices to register")
	users := fs.Int("users", 100, "users to spread them over")
	out := fs.String("out", "requests.tsv", "output file")
	cfg, err := config.Load(fs, os.Args[1:], os.Getenv)
	if err != nil {
		return err
	}
	cfg.AccessTokenTTL = 6 * time.Hour
	ctx := context.Background()
	key, err := cfg.LoadMasterKey()
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := store.New(ctx, db)
	if err != nil {
		return err
	}
	clk := clock.Real{}
	svc, err := control.New(control.Deps{Store: st, Presence: presence.NewMemory(clk, time.Hour), Sessions: session.NewMemory(clk),
		Clock: clk, Log: logging.Discard(), MasterKey: key}, control.OptionsFrom(cfg))
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	start := time.Now()
	per := (*devices + *users - 1) / *users
	n := 0
	for u := 0; u < *users && n < *devices; u++ {
		email := fmt.Sprintf("bench%d-%d@example.com", u, start.UnixNano())
		usr, err := svc.CreateUser(ctx, email, "bench-password", "unlimited")
		if err != nil {
			return err
		}
		raw, _, err := svc.CreateSecurityKey(ctx, usr.ID, "bench", 0)
		if err != nil {
			return err
		}
		for i := 0; i < per && n < *devices; i++ {
			hw := fmt.Sprintf("hw-%d-%d", u, i)
			// Each device logs in on its own and registers with that
			// login, as real devices do.
			pair, err := svc.LoginSecurityKey(ctx, raw)
			if err != nil {
				return err
			}
			p, err := svc.Authenticate(pair.Token)
			if err != nil {
				return err
			}
			if _, _, err := svc.RegisterDevice(ctx, p, hw, hw, "linux", ""); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\t%s\n", pair.Token, hw)
			n++
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "edgeseed: %d devices for %d users in %s\n", n, *users, time.Since(start).Round(time.Millisecond))
	return nil
}
