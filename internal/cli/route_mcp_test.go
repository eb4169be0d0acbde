package cli

import (
	"context"
	"io"
	"net/http"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/mcp"
	"github.com/omniedge/omni/internal/route/store"
)

// `omni route mcp` serves a running gateway's tools to a client on its
// stdin and stdout.
func TestRouteMCPStdio(t *testing.T) {
	e := admintest.Running(t, nil)
	up := admintest.NewUpstream(t, "up")
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": up.URL, "api_key": "sk-p-upstream-key"})
	st, err := store.New(context.Background(), e.DB, admintest.MasterKey)
	if err != nil {
		t.Fatal(err)
	}
	// The login is off here, so the command needs no credential until
	// management keys carry the mcp scope.
	for k, v := range map[string]string{mcp.SettingEnabled: "true", mcp.SettingTransport: mcp.TransportStreamable, store.SettingRequireLogin: "false"} {
		if err := st.SetSetting(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}

	stdin, clientOut := io.Pipe()
	clientIn, stdout := io.Pipe()
	code := make(chan int, 1)
	getenv := func(k string) string {
		if k == "OMNI_ROUTE_URL" {
			return e.Srv.URL
		}
		return ""
	}
	go func() {
		code <- Run(context.Background(), []string{"route", "mcp"}, Env{Stdin: stdin, Stdout: stdout, Stderr: io.Discard, Getenv: getenv})
	}()

	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &sdk.IOTransport{Reader: clientIn, Writer: clientOut}, nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "omniroute_chat",
		Arguments: map[string]any{"model": "p/m", "messages": []map[string]string{{"role": "user", "content": "hello"}}}})
	if err != nil || res.IsError {
		t.Fatalf("chat: %v %+v", err, res)
	}
	if m, _ := res.StructuredContent.(map[string]any); m["content"] != "hi from up" {
		t.Errorf("chat answer %+v", res.StructuredContent)
	}
	// The login is off: the audit names the caller "open".
	a := e.Want(http.StatusOK, "GET", "/api/mcp/audit", nil).Object(t)
	if rows := a["entries"].([]any); len(rows) != 1 || rows[0].(map[string]any)["caller"] != "open" {
		t.Errorf("audit %v", a)
	}
	cs.Close()
	clientOut.Close()
	if c := <-code; c != 0 {
		t.Errorf("omni route mcp exited %d", c)
	}
}
