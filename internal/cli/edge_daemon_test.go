package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

func TestEdgeUpHasDataPlane(t *testing.T) {
	if tunnels, sessions := edgeDataPlane(nil); tunnels == nil || sessions == nil {
		t.Fatal("`omni edge up` has no data plane wired in")
	}
	code, _, errs := run(t, "edge", "up", "--state", t.TempDir())
	if code != 2 || !strings.Contains(errs, "--server is required") {
		t.Fatalf("up without --server: %d %q", code, errs)
	}
	code, out, _ := run(t, "edge")
	for _, c := range []string{"up", "status", "down", "login", "admin"} {
		if code != 0 || !strings.Contains(out, "  "+c+" ") {
			t.Fatalf("edge help lacks %q: %s", c, out)
		}
	}
}

func TestEdgeStatusWithoutDaemon(t *testing.T) {
	for _, cmd := range []string{"status", "down"} {
		code, _, errs := run(t, "edge", cmd, "--state", t.TempDir()+"/missing")
		if code != 1 || !strings.Contains(errs, "no edge daemon is running") {
			t.Fatalf("%s without a daemon: %d %q", cmd, code, errs)
		}
	}
}

type cliTunnel struct {
	cfg   daemon.NetworkConfig
	peers []daemon.PeerStatus // nil: one relayed peer at 100.66.0.9
}

func (c *cliTunnel) SetPeers([]daemon.Peer) error     { return nil }
func (c *cliTunnel) SetSecret(string) error           { return nil }
func (c *cliTunnel) SetExit(netip.Addr) error         { return nil }
func (c *cliTunnel) ServeRoutes([]netip.Prefix) error { return nil }
func (c *cliTunnel) SetFilter(*policy.Filter) error   { return nil }
func (c *cliTunnel) Close() error                     { return nil }
func (c *cliTunnel) Status() daemon.TunnelStatus {
	if c.peers != nil {
		return daemon.TunnelStatus{Interface: c.cfg.Interface, Peers: c.peers}
	}
	return daemon.TunnelStatus{Interface: c.cfg.Interface, Peers: []daemon.PeerStatus{{
		PublicKey: wgkey.Key{7}, VirtualIP: netip.MustParseAddr("100.66.0.9"), Endpoint: netip.MustParseAddrPort("203.0.113.5:51820"),
		Path: daemon.PathRelayed, LastHandshake: time.Now().Add(-3 * time.Second), RxBytes: 11, TxBytes: 22}}}
}

type cliSession struct{}

func (cliSession) Register(context.Context) error { return nil }
func (cliSession) Run(ctx context.Context) error  { <-ctx.Done(); return nil }
func (cliSession) Leave(context.Context) error    { return nil }
func (cliSession) SetSecret(string) error         { return nil }

func TestEdgeStatusAndDown(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	if _, err := env.Client(u).CreateNetwork(context.Background(), wire.CreateNetworkRequest{Name: "home"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(context.Background(), daemon.Config{Server: env.URL, SecurityKey: u.Key, Name: "bot", StateDir: dir}, daemon.Deps{
			Tunnels: func(_ context.Context, cfg daemon.NetworkConfig) (daemon.Tunnel, error) {
				return &cliTunnel{cfg: cfg}, nil
			},
			Nucleus: func(daemon.NetworkConfig, daemon.Tunnel, daemon.SessionHooks) (daemon.Session, error) {
				return cliSession{}, nil
			},
		})
	}()
	var st daemon.Status
	deadline := time.Now().Add(10 * time.Second)
	for st.State != "running" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		code, out, _ := run(t, "edge", "status", "--json", "--state", dir)
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status --json: %v %s", err, out)
			}
		}
	}
	if st.State != "running" || len(st.Networks) != 1 || st.Networks[0].Interface != "omni0" || len(st.Networks[0].Peers) != 1 {
		t.Fatalf("status %+v", st)
	}
	code, out, errs := run(t, "edge", "status", "--state", dir)
	for _, want := range []string{"running", "bot", "omni0", st.Networks[0].VirtualIP, "100.66.0.9", "relayed", "203.0.113.5:51820", "3s ago"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status lacks %q: %d %s %s", want, code, out, errs)
		}
	}
	code, out, errs = run(t, "edge", "down", "--state", dir)
	if code != 0 || !strings.Contains(out, "stopped") {
		t.Fatalf("down: %d %s %s", code, out, errs)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("daemon after down: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
}

// lineWriter hands each written line to a channel.
type lineWriter struct {
	mu    sync.Mutex
	pw    *io.PipeWriter
	lines chan string
}

func newLineWriter() *lineWriter {
	pr, pw := io.Pipe()
	w := &lineWriter{pw: pw, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pw.Write(p)
}

func TestEdgeLogin(t *testing.T) {
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	dir := t.TempDir()
	out := newLineWriter()
	var errb strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- Run(context.Background(), []string{"edge", "login", "--server", env.URL, "--state", dir, "--timeout", "20s"},
			Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: &errb, Getenv: func(string) string { return "" }})
		out.pw.Close()
	}()
	var session string
	re := regexp.MustCompile(`https?://\S+`)
	deadline := time.After(10 * time.Second)
	for session == "" {
		select {
		case line, ok := <-out.lines:
			if !ok {
				t.Fatalf("login ended without printing an address: %s", errb.String())
			}
			if m := re.FindString(line); m != "" {
				pu, err := url.Parse(m)
				if err != nil {
					t.Fatal(err)
				}
				session = pu.Query().Get("session")
			}
		case <-deadline:
			t.Fatal("login printed no address")
		}
	}
	// The device prints the code the approval page will show.
	var printed string
	codeRE := regexp.MustCompile(`\b[A-Z2-9]{4}-[A-Z2-9]{4}\b`)
	for printed == "" {
		select {
		case line, ok := <-out.lines:
			if !ok || strings.HasPrefix(line, "Waiting") {
				t.Fatalf("login printed no code before waiting (%q): %s", line, errb.String())
			}
			printed = codeRE.FindString(line)
		case <-deadline:
			t.Fatal("login printed no code")
		}
	}
	req, ok, err := env.Service.SessionPending(context.Background(), session)
	if err != nil || !ok || req.Code != printed {
		t.Fatalf("printed code %q, session's code %q (%v, %v)", printed, req.Code, ok, err)
	}
	if err := env.Service.ApproveSession(context.Background(), session, env.Service.ApprovalToken(session, u.ID)); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range out.lines { // drain the rest of the output
		}
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("login exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("login did not finish after approval")
	}
	id, err := daemon.ReadIdentity(dir)
	if err != nil || id.RefreshToken == "" || id.Server != env.URL {
		t.Fatalf("saved login %+v: %v", id, err)
	}
	c := client.New(env.URL, nil)
	c.SetTokens(id.Token, id.RefreshToken)
	if _, err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("the saved refresh token does not work: %v", err)
	}
}
