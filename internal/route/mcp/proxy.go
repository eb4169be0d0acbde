package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// ProxyOptions configure Proxy.
type ProxyOptions struct {
	// URL is the gateway's base URL (http://localhost:20128).
	URL string
	// Key, when set, is sent as the Bearer credential (a management key
	// with the mcp scope).
	Key string
	// HTTPClient is the client the requests go through (nil: a default
	// one).
	HTTPClient *http.Client
	Version    string
}

// Proxy is the stdio transport: it serves MCP over in and out (a local
// client's pipes) with the tools of the gateway at opt.URL, relaying
// every call to the gateway's HTTP transport, the one its settings
// configure. The gateway runs the tools and audits the calls; the proxy
// holds no state of its own. It returns when ctx ends or in closes.
func Proxy(ctx context.Context, opt ProxyOptions, in io.ReadCloser, out io.WriteCloser) error {
	base := strings.TrimRight(opt.URL, "/")
	if base == "" {
		return errors.New("mcp: the gateway URL is required")
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	if opt.Key != "" {
		c := *hc
		c.Transport = bearer{key: opt.Key, next: hc.Transport}
		hc = &c
	}
	transport, err := remoteTransport(ctx, hc, base)
	if err != nil {
		return err
	}
	var t sdk.Transport
	if transport == TransportSSE {
		t = &sdk.SSEClientTransport{Endpoint: base + "/api/mcp/sse", HTTPClient: hc}
	} else {
		t = &sdk.StreamableClientTransport{Endpoint: base + "/api/mcp/stream", HTTPClient: hc, DisableStandaloneSSE: true}
	}
	version := opt.Version
	if version == "" {
		version = "dev"
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "omni-route-mcp", Version: version}, nil)
	remote, err := client.Connect(ctx, t, nil)
	if err != nil {
		return fmt.Errorf("mcp: connecting to %s: %w", base, err)
	}
	defer remote.Close()
	srv := sdk.NewServer(&sdk.Implementation{Name: "omniroute", Title: "OmniRoute", Version: version},
		&sdk.ServerOptions{Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}}})
	for tool, err := range remote.Tools(ctx, nil) {
		if err != nil {
			return fmt.Errorf("mcp: listing the gateway's tools: %w", err)
		}
		name := tool.Name
		srv.AddTool(tool, func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return remote.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: req.Params.Arguments})
		})
	}
	err = srv.Run(ctx, &sdk.IOTransport{Reader: in, Writer: out, MaxLineLength: DefaultMaxMessage})
	if ctx.Err() != nil || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// remoteTransport asks the gateway whether MCP is on and over which
// transport.
func remoteTransport(ctx context.Context, hc *http.Client, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/mcp/status", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("mcp: reaching the gateway: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return "", fmt.Errorf("mcp: the gateway answered %d: %s", resp.StatusCode, e.Error.Message)
	}
	var st statusBody
	if err := json.Unmarshal(body, &st); err != nil {
		return "", fmt.Errorf("mcp: the gateway's MCP status is unreadable: %w", err)
	}
	if !st.Enabled {
		return "", errors.New("mcp: the gateway's MCP server is off (setting mcpEnabled)")
	}
	return st.Transport, nil
}

// bearer adds the Authorization header to every request.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	next := b.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}
