// Package cli owns the omni command tree: `serve` (both products or one),
// `edge up|status|ping|netcheck|down|login` for devices, `edge admin …` for operators,
// `route mcp` (the gateway's MCP tools over stdio), `version` and
// `healthcheck`. Each command parses its own flags, builds what it needs
// from internal packages and returns an exit code; nothing here holds
// global state.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Env is the process environment a command runs in.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Reexec replaces the process with a new start of the same command
	// (Reexec in main: syscall.Exec of os.Args), for `omni serve`'s
	// restart through the management API; nil: no restart.
	Reexec func() error
}

// Version is set at build time with -ldflags "-X github.com/omniedge/omni/internal/cli.Version=…".
var Version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
	sub     map[string]*command
}

func tree() *command {
	return &command{sub: map[string]*command{
		"serve": {summary: "run the services: `serve` (all), `serve edge`, `serve route`", run: runServe},
		"edge": {summary: "OmniEdge commands", sub: map[string]*command{
			"up":       {summary: "run the edge daemon: --server URL --security-key KEY [--name N] [--network ID]... [--exit-node] [--state DIR]", run: edgeUp},
			"status":   {summary: "show the running daemon's networks and peers: [--json] [--state DIR]", run: edgeStatus},
			"down":     {summary: "stop the running daemon: [--state DIR]", run: edgeDown},
			"ping":     {summary: "measure the round trip to a peer through the tunnel and show its path: NAME|IP [--count 4] [--timeout 2s] [--interval 1s] [--state DIR]", run: edgePing},
			"netcheck": {summary: "probe each network's nucleus: UDP reachability, latency, the endpoint it sees, NAT: [--json] [--state DIR]", run: edgeNetcheck},
			"login":    {summary: "log in through the browser and save the login: --server URL [--state DIR]", run: edgeLogin},
			"nucleus":  {summary: "run a user-hosted nucleus for the account's networks: --server URL --security-key KEY --public HOST:PORT [--listen :51820] [--name N]", run: edgeNucleus},
			"admin": {summary: "administer users, keys, networks and devices", sub: map[string]*command{
				"user": {summary: "manage users", sub: map[string]*command{
					"create": {summary: "create a user: --email E --password P [--plan free|pro|unlimited]", run: adminUserCreate},
					"list":   {summary: "list users", run: adminUserList},
				}},
				"key": {summary: "manage security keys", sub: map[string]*command{
					"create": {summary: "create a security key: --email E [--name N] [--expires 720h]", run: adminKeyCreate},
					"list":   {summary: "list a user's security keys: --email E", run: adminKeyList},
					"revoke": {summary: "revoke a security key: --email E --id KEY_ID", run: adminKeyRevoke},
				}},
				"network": {summary: "manage virtual networks", sub: map[string]*command{
					"create": {summary: "create a network: --email E --name N [--ip-range 100.66.1.0/24]", run: adminNetworkCreate},
					"list":   {summary: "list all networks", run: adminNetworkList},
				}},
				"device": {summary: "inspect devices", sub: map[string]*command{
					"list": {summary: "list all devices", run: adminDeviceList},
				}},
			}},
		}},
		"version":     {summary: "print the version, VCS revision, Go version and platform: [--json]", run: runVersion},
		"healthcheck": {summary: "exit 0 when a running omni answers its health URL: [--url http://127.0.0.1:8080/healthz] [--timeout 3s]", run: runHealthcheck},
		"route": {summary: "OmniRoute commands", sub: map[string]*command{
			"mcp": {summary: "serve the gateway's MCP tools over stdio: [--url http://localhost:20128] [--key KEY] (OMNI_ROUTE_URL, OMNI_ROUTE_KEY)", run: routeMCP},
		}},
	}}
}

// usageError is printed with the command's help and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Run executes the command named by args and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	cmd, path := tree(), []string{"omni"}
	for len(args) > 0 && cmd.sub != nil {
		next, ok := cmd.sub[args[0]]
		if !ok {
			break
		}
		cmd, path, args = next, append(path, args[0]), args[1:]
	}
	if cmd.run == nil {
		if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
			fmt.Fprintf(env.Stderr, "%s: unknown command %q\n\n", strings.Join(path, " "), args[0])
			printHelp(env.Stderr, path, cmd)
			return 2
		}
		printHelp(env.Stdout, path, cmd)
		return 0
	}
	err := cmd.run(ctx, env, args)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "%s: %s\n", strings.Join(path, " "), ue.msg)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "%s: %v\n", strings.Join(path, " "), err)
		return 1
	}
}

func printHelp(w io.Writer, path []string, cmd *command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]\n\ncommands:\n", strings.Join(path, " "))
	names := make([]string, 0, len(cmd.sub))
	for n := range cmd.sub {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmd.sub[n].summary)
	}
}
