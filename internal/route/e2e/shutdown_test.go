package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// A request still running when the gateway is told to stop finishes
// during the drain, and the spend it settles is in route_key_spend once
// the process has exited: the last flush comes after the HTTP server has
// drained.
func TestSpendSettledWhileDrainingIsPersisted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	got, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"late"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}`)
	}))
	t.Cleanup(up.Close)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before up.Close: a held handler would block it
	dir := t.TempDir()
	config := filepath.Join(dir, "omni.yaml")
	conf := fmt.Sprintf(`route:
  initial_password: drain-dashboard-pw
  require_api_key: true
  providers:
    - id: oa
      type: openai
      base_url: %s/v1
      api_keys: [sk-upstream]
      models: [m]
`, up.URL)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	addr := testenv.FreeTCP(t)
	cmd := exec.Command(testenv.OmniBinary(t), "serve", "route", "--route-listen", addr, "--data", data, "--config", config,
		"--log-level", "warn", "--shutdown-grace", "20s")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway logs:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	if !testenv.WaitOK(url+"/readyz", 30*time.Second) {
		t.Fatal("the gateway never became ready")
	}

	jar, _ := cookiejar.New(nil)
	mgmt := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if r := do(t, mgmt, "POST", url+"/api/auth/login", map[string]string{"password": "drain-dashboard-pw"}); r.status != 200 {
		t.Fatalf("login: %d %v", r.status, r.body)
	}
	k := do(t, mgmt, "POST", url+"/api/keys", map[string]any{"name": "late"})
	if k.status != 201 {
		t.Fatalf("key: %d %v", k.status, k.body)
	}
	keyID, raw := k.body["id"].(string), k.body["key"].(string)
	// $1 per million input and $2 per million output tokens: $0.002.
	if r := do(t, mgmt, "PUT", url+"/api/pricing", map[string]any{"pattern": "oa/m", "input": 1, "output": 2}); r.status != 200 {
		t.Fatalf("pricing: %d %v", r.status, r.body)
	}
	if r := do(t, mgmt, "POST", url+"/api/usage/budget", map[string]any{"apiKeyId": keyID, "dailyLimitUsd": 5}); r.status != 200 {
		t.Fatalf("budget: %d %v", r.status, r.body)
	}

	answered := make(chan answer, 1)
	go func() { answered <- chat(t, &replica{url: url}, raw, "oa/m", 0.5) }()
	select {
	case <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes at once; the request in flight goes on.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the gateway kept accepting connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	free()
	if a := <-answered; a.status != 200 {
		t.Fatalf("the draining request: %d %v", a.status, a.body)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("exit: %v", exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway did not exit")
	}

	db, err := sqldb.Open(context.Background(), filepath.Join(data, "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var micros int64
	if err := db.QueryRow(context.Background(), `SELECT COALESCE(SUM(spent_micros), 0) FROM route_key_spend WHERE key_id = ? AND period = 'daily'`,
		keyID).Scan(&micros); err != nil {
		t.Fatal(err)
	}
	if micros != 2000 {
		t.Fatalf("persisted daily spend %d µUSD, want the 2000 settled while draining", micros)
	}
}
