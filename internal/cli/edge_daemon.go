package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/platform/logging"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func edgeFlags(env Env, name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("omni edge "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	state := fs.String("state", daemon.DefaultStateDir(env.Getenv), "state directory (identity, saved login, control socket)")
	return fs, state
}

func parseEdge(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// edgeUp runs the edge daemon in the foreground until ctx ends or
// `omni edge down`.
func edgeUp(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "up")
	server := fs.String("server", env.Getenv("OMNI_EDGE_SERVER"), "control-plane URL, e.g. https://api.example.com (env OMNI_EDGE_SERVER)")
	key := fs.String("security-key", "", "security key to log in with (env OMNI_EDGE_SECURITY_KEY; default: the saved login)")
	name := fs.String("name", "", "device name (default: the hostname)")
	var networks listFlag
	fs.Var(&networks, "network", "network id to join; repeatable (default: every network of the account)")
	exit := fs.Bool("exit-node", false, "consent to serve as exit node for the networks whose admin enables it")
	var advertise listFlag
	fs.Var(&advertise, "advertise-routes", "subnet routes to offer the networks, e.g. 10.1.0.0/24,fd00:1::/64 (the network's owner approves them)")
	snat := fs.Bool("snat-subnet-routes", true, "masquerade the members' addresses on the subnet routes served (off: the LAN needs a route back to the network)")
	dns := fs.Bool("dns", true, "serve the networks' names (<device>.<network>.<suffix>) and point the host's resolver at them")
	dnsMode := fs.String("dns-mode", "", "how the host's resolver is pointed at the names: resolved or resolv.conf (default: resolved when systemd-resolved runs)")
	resolvConf := fs.String("resolv-conf", "/etc/resolv.conf", "the resolver configuration the resolv.conf mode rewrites (and restores on the way out)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	dual := addHostedFlags(fs, "nucleus-", "")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	if *server == "" {
		return usageError{"--server is required"}
	}
	if *key == "" {
		*key = env.Getenv("OMNI_EDGE_SECURITY_KEY")
	}
	log, err := logging.New(env.Stderr, *level, *format)
	if err != nil {
		return usageError{err.Error()}
	}
	// Dual Mode: the process also serves as the account's nucleus; either
	// half ending stops the other.
	var (
		nucleusErr  chan error
		stopNucleus = func() {}
	)
	if *dual.listen != "" {
		if *key == "" {
			return usageError{"--nucleus-listen needs --security-key"}
		}
		ctx, stopNucleus = context.WithCancel(ctx)
		defer stopNucleus()
		done, err := dual.start(ctx, *server, *key, *state, log)
		if err != nil {
			return err
		}
		nucleusErr = make(chan error, 1)
		go func() {
			err := <-done
			stopNucleus() // stops the daemon too
			nucleusErr <- err
		}()
	}
	switch *dnsMode {
	case "", "resolved", "resolv.conf":
	default:
		return usageError{fmt.Sprintf("--dns-mode %q: want resolved or resolv.conf", *dnsMode)}
	}
	if !*dns {
		*dnsMode = "off"
	}
	tunnels, nucleus := edgeDataPlane(log)
	deps := daemon.Deps{Tunnels: tunnels, Nucleus: nucleus, Log: log, Pinger: edgePinger()}
	nm, err := newEdgeNames(*state, *dnsMode, *resolvConf, log)
	if err != nil {
		return fmt.Errorf("names: %w", err)
	}
	if nm != nil {
		deps.Names = nm
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := nm.Close(cctx); err != nil {
				log.Warn("names: restoring the host's resolver failed", "err", err)
			}
		}()
	}
	for _, r := range advertise {
		if _, err := netip.ParsePrefix(r); err != nil {
			return usageError{fmt.Sprintf("--advertise-routes: %q is not a prefix such as 10.1.0.0/24", r)}
		}
	}
	err = daemon.Run(ctx, daemon.Config{Server: *server, SecurityKey: *key, Name: *name, Networks: networks,
		ExitNode: *exit, StateDir: *state, AdvertiseRoutes: advertise, NoSNAT: !*snat}, deps)
	if nucleusErr != nil {
		stopNucleus()
		if nerr := <-nucleusErr; nerr != nil && !errors.Is(nerr, context.Canceled) && err == nil {
			err = nerr
		}
	}
	return err
}

func edgeDown(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "down")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := daemon.Down(ctx, *state); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "edge daemon stopped")
	return nil
}

// edgeLogin logs in through the browser and saves the tokens in the state
// directory for `omni edge up` without --security-key.
func edgeLogin(ctx context.Context, env Env, args []string) error {
	fs, state := edgeFlags(env, "login")
	server := fs.String("server", env.Getenv("OMNI_EDGE_SERVER"), "control-plane URL (env OMNI_EDGE_SERVER)")
	timeout := fs.Duration("timeout", 15*time.Minute, "how long to wait for the browser")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	if *server == "" {
		return usageError{"--server is required"}
	}
	base := strings.TrimRight(*server, "/")
	st, err := daemon.OpenState(*state, logging.Discard())
	if err != nil {
		return err
	}
	c := client.New(base, &http.Client{Timeout: 30 * time.Second})
	sess, err := c.StartSession(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Open this address in a browser to log in and approve this device:\n\n  %s\n\n", sess.AuthURL)
	if sess.Code != "" {
		fmt.Fprintf(env.Stdout, "Approve only if the page shows the code  %s  (a page showing another code is not your login).\n\n", sess.Code)
	}
	fmt.Fprintf(env.Stdout, "Waiting…\n")
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tok, err := c.WaitSession(wctx, sess.UUID)
	if err != nil {
		return err
	}
	if err := st.Update(func(i *daemon.Identity) { i.Server, i.Token, i.RefreshToken = base, tok.Token, tok.RefreshToken }); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Logged in; saved to %s. Start with: omni edge up --server %s\n", st.Dir, base)
	return nil
}
