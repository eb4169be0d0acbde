package cli

import (
	"context"
	"flag"
	"io"

	"github.com/omniedge/omni/internal/route/mcp"
)

// routeMCP serves MCP over stdin and stdout (the stdio transport) with
// the tools of a running gateway: every call is relayed to the gateway's
// HTTP transport (route/mcp.Proxy), which runs and audits it.
func routeMCP(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("omni route mcp", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	defURL := env.Getenv("OMNI_ROUTE_URL")
	if defURL == "" {
		defURL = "http://localhost:20128"
	}
	url := fs.String("url", defURL, "the gateway's base URL (OMNI_ROUTE_URL)")
	key := fs.String("key", "", "a management key with the mcp scope, sent as the Bearer credential (default $OMNI_ROUTE_KEY)")
	if err := parseEdge(fs, args); err != nil {
		return err
	}
	if *key == "" {
		*key = env.Getenv("OMNI_ROUTE_KEY")
	}
	return mcp.Proxy(ctx, mcp.ProxyOptions{URL: *url, Key: *key, Version: Version}, io.NopCloser(env.Stdin), nopWriteCloser{env.Stdout})
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
