package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
)

// lockedBuffer is an io.Writer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `omni serve` in-process with args (plus a fresh data
// dir) until the test ends, and waits until urls answer.
func startServe(t *testing.T, env map[string]string, urls []string, args ...string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	args = append([]string{"serve"}, append(args, "--data", t.TempDir())...)
	var code int
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		code = Run(ctx, args, Env{Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs, Getenv: func(k string) string { return env[k] }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Errorf("omni serve did not stop; logs:\n%s", logs)
		}
	})
	for _, u := range urls {
		if !testenv.WaitOK(u, 20*time.Second) {
			select {
			case <-exited:
				t.Fatalf("omni serve exited with %d; logs:\n%s", code, logs)
			default:
			}
			t.Fatalf("%s never answered; logs:\n%s", u, logs)
		}
	}
	return logs
}

func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The public listeners (edge API and gateway) do not serve /metrics by
// default: route names, status counts, provider and model names and
// process details are for the operator, not for anyone who reaches the
// port.
func TestMetricsAreNotOnThePublicListeners(t *testing.T) {
	edge, route := testenv.FreeTCP(t), testenv.FreeTCP(t)
	startServe(t, nil, []string{"http://" + edge + "/healthz", "http://" + route + "/healthz"},
		"--edge-listen", edge, "--route-listen", route, "--nucleus-listen", testenv.FreeUDP(t))
	for _, addr := range []string{edge, route} {
		if code, body := get(t, "http://"+addr+"/metrics"); code != http.StatusNotFound && code != http.StatusUnauthorized {
			t.Fatalf("%s/metrics: %d, want it not served: %.200s", addr, code, body)
		}
	}
}

// /metrics is served on --metrics-listen, and on the public listeners
// only to a bearer of --metrics-token.
func TestMetricsListenerAndToken(t *testing.T) {
	edge, route, mx := testenv.FreeTCP(t), testenv.FreeTCP(t), testenv.FreeTCP(t)
	startServe(t, map[string]string{"OMNI_METRICS_TOKEN": "scrape-secret-token"}, []string{"http://" + edge + "/healthz", "http://" + route + "/healthz", "http://" + mx + "/metrics"},
		"--edge-listen", edge, "--route-listen", route, "--nucleus-listen", testenv.FreeUDP(t), "--metrics-listen", mx)
	if code, body := get(t, "http://"+mx+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, `server="route"`) {
		t.Fatalf("metrics listener: %d %.300s", code, body)
	}
	for _, addr := range []string{edge, route} {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "scrape-secret-token"}} {
			if code, _ := get(t, "http://"+addr+"/metrics", hdr...); code != http.StatusUnauthorized {
				t.Fatalf("%s/metrics with %q: %d, want 401", addr, hdr, code)
			}
		}
		if code, body := get(t, "http://"+addr+"/metrics", "Authorization", "Bearer scrape-secret-token"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Fatalf("%s/metrics with the token: %d %.200s", addr, code, body)
		}
	}
}

// --metrics-listen off serves metrics nowhere; an explicit address that
// cannot be bound stops the start.
func TestMetricsListenOffAndTaken(t *testing.T) {
	route := testenv.FreeTCP(t)
	startServe(t, nil, []string{"http://" + route + "/healthz"}, "route", "--route-listen", route, "--metrics-listen", "off")
	if code, _ := get(t, "http://"+route+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("public /metrics: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs bytes.Buffer
	code := Run(ctx, []string{"serve", "route", "--data", t.TempDir(), "--route-listen", testenv.FreeTCP(t), "--metrics-listen", route},
		Env{Stdin: strings.NewReader(""), Stdout: &errs, Stderr: &errs, Getenv: func(string) string { return "" }})
	if code == 0 || ctx.Err() != nil || !strings.Contains(errs.String(), "metrics") {
		t.Fatalf("a taken --metrics-listen: exit %d: %s", code, errs.String())
	}
}

type fakeReady struct{ ok bool }

func (f fakeReady) Ready() bool { return f.ok }

type fakePinger struct{ err error }

func (f fakePinger) Ping(context.Context) error { return f.err }

// The edge API's /readyz says not ready until the control plane is (it
// follows the other replicas' network notices), and while the database
// does not answer.
func TestEdgeReadyNeedsTheApp(t *testing.T) {
	ctx := context.Background()
	if err := edgeReady(fakePinger{}, nil, fakeReady{false})(ctx); err == nil {
		t.Fatal("ready while the app is not")
	}
	if err := edgeReady(fakePinger{errors.New("down")}, nil, fakeReady{true})(ctx); err == nil {
		t.Fatal("ready while the database is down")
	}
	if err := edgeReady(fakePinger{}, nil, fakeReady{true})(ctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
}

// A --trust-proxy that believes everyone in the private ranges is warned
// about in the start-up log.
func TestBroadTrustProxyWarnedAtStart(t *testing.T) {
	edge := testenv.FreeTCP(t)
	logs := startServe(t, nil, []string{"http://" + edge + "/readyz"},
		"edge", "--edge-listen", edge, "--nucleus-listen", testenv.FreeUDP(t), "--metrics-listen", "off", "--trust-proxy=true")
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "--trust-proxy=true") {
		t.Fatalf("no warning about --trust-proxy=true in the log:\n%s", logs)
	}
}

// A --nucleus-listen that cannot be bound stops the start (the edge's
// Run fails, and everything started beside it stops), with the nucleus's
// error.
func TestNucleusListenTaken(t *testing.T) {
	hold, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs lockedBuffer
	code := Run(ctx, []string{"serve", "--data", t.TempDir(), "--edge-listen", testenv.FreeTCP(t), "--route-listen", testenv.FreeTCP(t),
		"--nucleus-listen", hold.LocalAddr().String(), "--metrics-listen", "off"},
		Env{Stdin: strings.NewReader(""), Stdout: &errs, Stderr: &errs, Getenv: func(string) string { return "" }})
	if code == 0 || ctx.Err() != nil || !strings.Contains(errs.String(), "nucleus: ") {
		t.Fatalf("a taken --nucleus-listen: exit %d: %s", code, errs.String())
	}
}

// POST /api/restart through the gateway's management API answers 202,
// then `omni serve` drains and stops, and starts again through
// Env.Reexec; POST /api/shutdown stops it without a new start.
func TestServeRestartAndShutdownThroughTheAPI(t *testing.T) {
	for _, c := range []struct {
		path    string
		reexecs int32
	}{{"/api/restart", 1}, {"/api/shutdown", 0}} {
		t.Run(strings.TrimPrefix(c.path, "/api/"), func(t *testing.T) {
			route := testenv.FreeTCP(t)
			var reexecs atomic.Int32
			logs := &lockedBuffer{}
			exited := make(chan int, 1)
			go func() {
				exited <- Run(context.Background(), []string{"serve", "route", "--data", t.TempDir(), "--route-listen", route, "--metrics-listen", "off"},
					Env{Stdin: strings.NewReader(""), Stdout: logs, Stderr: logs, Getenv: func(k string) string {
						if k == "INITIAL_PASSWORD" {
							return "restart-test-password"
						}
						return ""
					}, Reexec: func() error { reexecs.Add(1); return nil }})
			}()
			if !testenv.WaitOK("http://"+route+"/healthz", 20*time.Second) {
				t.Fatalf("the gateway never answered; logs:\n%s", logs)
			}
			jar, _ := cookiejar.New(nil)
			c2 := &http.Client{Jar: jar}
			post := func(path, body string) int {
				req, _ := http.NewRequest("POST", "http://"+route+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c2.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if st := post("/api/auth/login", `{"password":"restart-test-password"}`); st != http.StatusOK {
				t.Fatalf("login: %d", st)
			}
			if st := post(c.path, ""); st != http.StatusAccepted {
				t.Fatalf("%s: %d", c.path, st)
			}
			select {
			case code := <-exited:
				if code != 0 || reexecs.Load() != c.reexecs {
					t.Fatalf("exit %d with %d re-executions, want 0 and %d; logs:\n%s", code, reexecs.Load(), c.reexecs, logs)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("omni serve did not stop; logs:\n%s", logs)
			}
		})
	}
}
