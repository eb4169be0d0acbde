package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// joinRewriter is a proxy in front of the control plane that changes the
// join answers' server object (as a tampered or misconfigured control
// plane would).
func joinRewriter(t *testing.T, target string, rewrite func(server map[string]any)) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodPost || !strings.HasPrefix(r.Request.URL.Path, "/api/v2/virtual-networks/") ||
			!strings.Contains(r.Request.URL.Path, "/devices/") || r.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		if srv, ok := m["server"].(map[string]any); ok {
			rewrite(srv)
		}
		if body, err = json.Marshal(m); err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s.URL
}

// runDaemonAt runs the real edge daemon against the control plane at
// url; the channel yields Run's end.
func runDaemonAt(t *testing.T, url, key, dir string) <-chan error {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	drainTUN(t, ct)
	tunnels, sessions := New(Options{
		TUN:        func(daemon.NetworkConfig) tun.Device { return ct.TUN() },
		ListenAddr: netip.MustParseAddr("127.0.0.1"),
		AnyPort:    true,
		Tick:       50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- daemon.Run(ctx, daemon.Config{Server: url, SecurityKey: key, Name: "device", StateDir: dir},
			daemon.Deps{Tunnels: tunnels, Nucleus: sessions})
	}()
	done := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case err := <-errc:
			done <- err
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	out := make(chan error, 1)
	go func() {
		err := <-errc
		done <- err
		out <- err
	}()
	return out
}

// A device whose join answer names a nucleus key other than its
// nucleus's real one cannot register: its frames fail the nucleus's
// checks, and it does not fall back to authenticating with the network
// key alone. A join answer that names no nucleus key at all leaves the
// network down with an error.
func TestDaemonNeedsTheNucleusKey(t *testing.T) {
	srv, _, env := startControlPlane(t)
	u := env.NewUser("")
	vn, err := env.Client(u).CreateNetwork(context.Background(), wire.CreateNetworkRequest{Name: "home"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := wgkey.GeneratePrivate()
	if err != nil {
		t.Fatal(err)
	}
	wrong := other.PublicKey().String()

	t.Run("another key", func(t *testing.T) {
		api := joinRewriter(t, env.URL, func(s map[string]any) { s["public_key"] = wrong })
		dir := t.TempDir()
		runDaemonAt(t, api, u.Key, dir)
		auth := srv.Stats().Dropped[nucleus.DropAuth]
		deadline := time.Now().Add(15 * time.Second)
		for {
			st, err := daemon.Query(context.Background(), dir)
			if err == nil && len(st.Networks) == 1 && st.Networks[0].Registered {
				t.Fatal("the device registered although its join answer names another nucleus key")
			}
			if srv.Stats().Dropped[nucleus.DropAuth] >= auth+2 {
				break // the nucleus refused its REGISTERs (and the one repeated with a cookie)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the nucleus saw no REGISTER: status %+v %v", st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := len(srv.Peers(vn.ID)); n != 0 {
			t.Fatalf("%d peers registered", n)
		}
	})

	t.Run("no key", func(t *testing.T) {
		api := joinRewriter(t, env.URL, func(s map[string]any) { delete(s, "public_key") })
		dir := t.TempDir()
		done := runDaemonAt(t, api, u.Key, dir)
		deadline := time.After(15 * time.Second)
		for {
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "public_key") {
					t.Fatalf("daemon ended with %v, want an error naming the missing public_key", err)
				}
				return
			case <-deadline:
				t.Fatal("the daemon kept running without the nucleus key")
			case <-time.After(10 * time.Millisecond):
			}
			if st, err := daemon.Query(context.Background(), dir); err == nil && len(st.Networks) == 1 && st.Networks[0].Registered {
				t.Fatal("the device registered although its join answer names no nucleus key")
			}
		}
	})
}
