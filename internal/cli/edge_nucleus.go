package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/hosted"
	"github.com/omniedge/omni/internal/platform/logging"
)

// hostedFlags are the flags of a user-hosted nucleus, shared by
// `omni edge nucleus` (Nucleus Mode) and `omni edge up` (Dual Mode, where
// they carry a "nucleus-" prefix).
type hostedFlags struct {
	listen, public, name, country, serverID *string
}

func addHostedFlags(fs *flag.FlagSet, prefix, defaultListen string) hostedFlags {
	return hostedFlags{
		listen:   fs.String(prefix+"listen", defaultListen, "UDP address the nucleus listens on"),
		public:   fs.String(prefix+"public", "", "HOST:PORT devices reach the nucleus at, advertised in /api/v2/user-servers (default: the listen address when it names a host)"),
		name:     fs.String(prefix+"name", "nucleus", "name of the user-server entry to create or take over"),
		country:  fs.String(prefix+"country", "US", "ISO 3166-1 alpha-2 country of the entry"),
		serverID: fs.String(prefix+"server-id", "", "take over this user-server entry (by id) instead of the one named by --"+prefix+"name"),
	}
}

// start binds the UDP socket and runs the hosted nucleus, with its static
// key in the state directory, in the background; the returned channel
// yields its end.
func (h hostedFlags) start(ctx context.Context, server, key, state string, log *slog.Logger) (<-chan error, error) {
	public := *h.public
	if public == "" {
		host, _, err := net.SplitHostPort(*h.listen)
		if err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
			return nil, usageError{"--public is required when the listen address names no host"}
		}
		public = *h.listen
	}
	api := client.New(strings.TrimRight(server, "/"), &http.Client{Timeout: 30 * time.Second})
	n, err := hosted.New(hosted.Config{SecurityKey: key, Public: public, Name: *h.name, Country: *h.country,
		ServerID: *h.serverID, StateDir: state}, hosted.Deps{API: api, Log: log.With("component", "nucleus")})
	if err != nil {
		return nil, usageError{err.Error()}
	}
	pc, err := net.ListenPacket("udp", *h.listen)
	if err != nil {
		return nil, fmt.Errorf("nucleus: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		defer pc.Close()
		done <- n.Run(ctx, pc)
	}()
	return done, nil
}

// edgeNucleus runs a user-hosted nucleus in the foreground (Nucleus Mode).
func edgeNucleus(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("omni edge nucleus", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	server := fs.String("server", env.Getenv("OMNI_EDGE_SERVER"), "control-plane URL (env OMNI_EDGE_SERVER)")
	key := fs.String("security-key", "", "security key of the account whose networks it serves (env OMNI_EDGE_SECURITY_KEY)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	state := fs.String("state", daemon.DefaultStateDir(env.Getenv), "state directory (the nucleus's static key, "+hosted.KeyFile+")")
	h := addHostedFlags(fs, "", ":51820")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	if *server == "" {
		return usageError{"--server is required"}
	}
	if *key == "" {
		*key = env.Getenv("OMNI_EDGE_SECURITY_KEY")
	}
	if *key == "" {
		return usageError{"--security-key is required"}
	}
	log, err := logging.New(env.Stderr, *level, *format)
	if err != nil {
		return usageError{err.Error()}
	}
	done, err := h.start(ctx, *server, *key, *state, log)
	if err != nil {
		return err
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
