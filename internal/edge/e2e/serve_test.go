//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/testenv"
)

func waitHTTP(t *testing.T, url string, logs *bytes.Buffer) {
	t.Helper()
	up := func() bool {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}
	if _, ok := testenv.Poll(20*time.Second, up); !ok {
		t.Fatalf("%s never answered; logs:\n%s", url, logs)
	}
}

// TestServeAllOnSQLite runs `omni serve` with defaults on an empty data
// dir: both HTTP listeners answer, the nucleus UDP port is held, and on
// SIGTERM the process flushes pending heartbeats and exits 0.
func TestServeAllOnSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	data := t.TempDir()
	edgeAddr, routeAddr, udpAddr, metricsAddr := testenv.FreeTCP(t), testenv.FreeTCP(t), testenv.FreeUDP(t), testenv.FreeTCP(t)
	cmd := exec.Command(testenv.OmniBinary(t), "serve", "--data", data, "--edge-listen", edgeAddr, "--route-listen", routeAddr,
		"--nucleus-listen", udpAddr, "--presence-flush", "1h", "--metrics-listen", metricsAddr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitHTTP(t, "http://"+edgeAddr+"/healthz", &logs)
	waitHTTP(t, "http://"+routeAddr+"/healthz", &logs)

	for _, u := range []string{"http://" + edgeAddr + "/readyz", "http://" + routeAddr + "/healthz", "http://" + metricsAddr + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, body)
		}
		if strings.HasSuffix(u, "/metrics") && !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("metrics lack the runtime collector")
		}
	}
	// Metrics are on their own listener, not on the public API.
	if resp, err := http.Get("http://" + edgeAddr + "/metrics"); err != nil || resp.StatusCode == http.StatusOK {
		t.Fatalf("the edge API serves /metrics: %v", err)
	} else {
		resp.Body.Close()
	}
	if c, err := net.ListenPacket("udp", udpAddr); err == nil {
		c.Close()
		t.Fatalf("nucleus UDP %s is not held by omni serve", udpAddr)
	}

	// A user, created while the server runs, registers and heartbeats.
	out := runAdmin(t, "user", "create", "--data", data, "--email", "flush@example.com", "--password", "correct horse battery", "--json")
	if !bytes.Contains(out, []byte("flush@example.com")) {
		t.Fatalf("user create: %s", out)
	}
	var key struct{ Key string }
	if err := json.Unmarshal(runAdmin(t, "key", "create", "--data", data, "--email", "flush@example.com", "--json"), &key); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := client.New("http://"+edgeAddr, nil)
	if _, err := c.LoginSecurityKey(ctx, key.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "d", HardwareUUID: "hw-flush"}); err != nil {
		t.Fatal(err)
	}
	hb, err := c.Heartbeat(ctx, "hw-flush", false)
	if err != nil {
		t.Fatal(err)
	}

	// The flush interval is an hour, so only the shutdown flush can write it.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("omni serve exited with %v; logs:\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("omni serve did not stop on SIGTERM; logs:\n%s", logs.String())
	}
	var devs []struct {
		HardwareUUID string  `json:"hardware_uuid"`
		LastSeen     *string `json:"last_seen"`
	}
	if err := json.Unmarshal(runAdmin(t, "device", "list", "--data", data, "--json"), &devs); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].LastSeen == nil {
		t.Fatalf("heartbeat not flushed on shutdown: %+v", devs)
	}
	seen, _ := time.Parse(time.RFC3339, *devs[0].LastSeen)
	want, _ := time.Parse(time.RFC3339, hb.LastSeen)
	if !seen.Equal(want) {
		t.Fatalf("flushed last_seen %s, heartbeat said %s", seen, want)
	}
	_ = os.Remove(data)
}
