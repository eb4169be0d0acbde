//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/testenv"
)

type replica struct {
	url  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// startReplica runs `omni serve edge` with args and waits for /readyz.
func startReplica(t *testing.T, name string, args ...string) *replica {
	t.Helper()
	addr := testenv.FreeTCP(t)
	full := append([]string{"serve", "edge", "--edge-listen", addr, "--nucleus-listen", testenv.FreeUDP(t), "--data", t.TempDir(), "--log-level", "warn"}, args...)
	cmd := exec.Command(testenv.OmniBinary(t), full...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{url: "http://" + addr, cmd: cmd, logs: logs}
	t.Cleanup(func() {
		stopProcess(cmd)
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, logs.String())
		}
	})
	if !testenv.WaitOK(r.url+"/readyz", 20*time.Second) {
		t.Fatalf("%s did not become ready; logs:\n%s", name, logs.String())
	}
	return r
}

func runAdmin(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testenv.OmniBinary(t), append([]string{"edge", "admin"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("omni edge admin %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestTwoReplicasBehaveAsOne runs two `omni serve edge` processes on one
// PostgreSQL database and one Redis and uses them interchangeably.
func TestTwoReplicasBehaveAsOne(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := testenv.Postgres(t)
	_, prefix := testenv.Redis(t)
	masterKey := base64.StdEncoding.EncodeToString(auth.RandomBytes(32))
	shared := []string{"--database", dsn, "--redis", testenv.RedisURL(), "--redis-prefix", prefix, "--master-key", masterKey}

	// Operators create the account with the admin CLI against the same database.
	email := fmt.Sprintf("replicas-%d@example.com", time.Now().UnixNano())
	runAdmin(t, append([]string{"user", "create", "--email", email, "--password", "correct horse battery", "--plan", "pro", "--json"}, shared...)...)
	var key struct{ Key string }
	if err := json.Unmarshal(runAdmin(t, append([]string{"key", "create", "--email", email, "--json"}, shared...)...), &key); err != nil || !strings.HasPrefix(key.Key, "oek_") {
		t.Fatalf("key create: %v %+v", err, key)
	}

	limits := []string{"--rate-limit-token", "1", "--rate-limit-ip", "0", "--online-window", "90s", "--presence-flush", "200ms"}
	a := startReplica(t, "replica A", append(shared, limits...)...)
	b := startReplica(t, "replica B", append(shared, limits...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Each device logs in on its own (its own token, so its own rate-limit
	// bucket), alternating replicas.
	login := func(r *replica) *client.Client {
		c := client.New(r.url, nil)
		if _, err := c.LoginSecurityKey(ctx, key.Key); err != nil {
			t.Fatalf("login on %s: %v", r.url, err)
		}
		return c
	}
	onA, exitOnB := login(a), login(b)
	admin := login(a)

	// Register on A; the device is known on B at once.
	dev, err := onA.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-robot", Platform: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	exitDev, err := exitOnB.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: "exit", HardwareUUID: "hw-exit", Platform: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	tokA, refA := onA.Tokens()
	robotOnB := client.New(b.url, nil)
	robotOnB.SetTokens(tokA, refA) // the same access token is valid on B
	if _, err := robotOnB.Heartbeat(ctx, "hw-robot", false); err != nil {
		t.Fatalf("heartbeat on B for a device registered on A: %v", err)
	}

	// One network, both devices in it; joining through either replica gives
	// the same addresses.
	time.Sleep(1100 * time.Millisecond) // token bucket of admin (1/s, burst 2)
	vn, err := admin.CreateNetwork(ctx, wire.CreateNetworkRequest{Name: "fleet"})
	if err != nil {
		t.Fatal(err)
	}
	joinA, err := admin.Join(ctx, vn.ID, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	joinExit, err := exitOnB.Join(ctx, vn.ID, exitDev.ID)
	if err != nil {
		t.Fatal(err)
	}
	adminOnB := client.New(b.url, nil)
	adminOnB.SetTokens(admin.Tokens())
	time.Sleep(1100 * time.Millisecond)
	again, err := adminOnB.Join(ctx, vn.ID, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.VirtualIP != joinA.VirtualIP || again.VirtualIPv6 != joinA.VirtualIPv6 || again.SecretKey != joinA.SecretKey {
		t.Fatalf("join on B differs from join on A: %+v vs %+v", again, joinA)
	}

	// The robot heartbeats on A (caching "no exit node" there); the exit
	// device consents on B; the admin enables it on A and the robot selects
	// it on B. A must see the change without a restart.
	if hb, err := onA.Heartbeat(ctx, "hw-robot", false); err != nil || len(hb.ExitNodes) != 0 {
		t.Fatalf("first heartbeat on A: %+v %v", hb, err)
	}
	if _, err := exitOnB.Heartbeat(ctx, "hw-exit", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	on := true
	if _, err := admin.UpdateMember(ctx, vn.ID, exitDev.ID, wire.UpdateMemberRequest{IsExitNode: &on}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := adminOnB.UpdateMember(ctx, vn.ID, dev.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(exitDev.ID)}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{vn.ID: joinExit.VirtualIP}
	var last wire.HeartbeatResponse
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(1100 * time.Millisecond) // stay under the robot's token rate
		last, err = onA.Heartbeat(ctx, "hw-robot", false)
		if err != nil {
			t.Fatal(err)
		}
		if len(last.ExitNodes) == 1 && last.ExitNodes[vn.ID] == want[vn.ID] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica A never saw the exit node selected on B: last %+v, want %v", last, want)
		}
	}

	// Presence written on either replica is visible on both.
	devs, err := adminOnB.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if !d.Online {
			t.Fatalf("device %s not online on B after heartbeats on A and B: %+v", d.Name, d)
		}
	}

	// Refresh rotation is shared: refresh on A, replaying the old refresh
	// token on B is reuse and revokes the family.
	fresh := client.New(a.url, nil)
	if _, err := fresh.LoginSecurityKey(ctx, key.Key); err != nil {
		t.Fatal(err)
	}
	_, oldRefresh := fresh.Tokens()
	if _, err := fresh.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	replay := client.New(b.url, nil)
	replay.SetTokens("", oldRefresh)
	if _, err := replay.Refresh(ctx); client.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("reused refresh token on B: got %v, want 401", err)
	}
	if _, err := fresh.Refresh(ctx); client.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("family not revoked after reuse: got %v, want 401", err)
	}

	// One rate limit for both: a token limited to 1/s (burst 2) gets at most
	// 2 (+1 for refill during the burst) of 8 rapid requests, wherever they land.
	burst := login(a)
	okCount := 0
	for i := 0; i < 8; i++ {
		target := a.url
		if i%2 == 1 {
			target = b.url
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target+"/api/v2/devices", nil)
		tok, _ := burst.Tokens()
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			okCount++
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("unexpected status %d", resp.StatusCode)
		}
	}
	if okCount < 2 || okCount > 3 {
		t.Fatalf("%d of 8 requests passed across two replicas; a shared 1/s burst-2 limit allows 2-3", okCount)
	}

	// Browser login across replicas: the client waits on B, the browser
	// approves on A.
	sess := client.New(b.url, nil)
	s, err := sess.StartSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, err := sess.WaitSession(ctx, s.UUID); got <- err }()
	approveInBrowser(t, a.url, s.UUID, email, "correct horse battery")
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("session tokens on B after approval on A: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("session socket on B never received the tokens")
	}
	if _, err := sess.Devices(ctx); err != nil {
		t.Fatalf("token from session login: %v", err)
	}
}

var approvalRE = regexp.MustCompile(`name="approval" value="([^"]+)"`)

// approveInBrowser plays the browser: password form, then approve.
func approveInBrowser(t *testing.T, base, session, email, password string) {
	t.Helper()
	resp, err := http.PostForm(base+"/login", url.Values{"session": {session}, "email": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := approvalRE.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("login form: %d %s", resp.StatusCode, body)
	}
	resp, err = http.PostForm(base+"/login/approve", url.Values{"session": {session}, "approval": {string(m[1])}, "action": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
}
