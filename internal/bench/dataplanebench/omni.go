//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/device/daemon"
)

// omniRun is the omni side of a run: the control plane in wan and one
// edge in A and one in B, joined to one network.
type omniRun struct {
	bin, dir string
	url      string
	a, b     *omniEdge
	network  string
	key      string
	wan      string
}

type omniEdge struct {
	name, ns, state string
	p               *proc
}

// buildOmni builds cmd/omni into dir.
func buildOmni(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "omni")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/omniedge/omni/cmd/omni").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/omni: %v\n%s", err, out)
	}
	return bin, nil
}

// startOmni runs `omni serve edge` in wan (API and nucleus on its
// loopback address), seeds a user and a network with the admin CLI, and
// runs `omni edge up` in A and B, waiting until both are registered.
func startOmni(ctx context.Context, tp *topology, bin, dir string) (*omniRun, error) {
	o := &omniRun{bin: bin, dir: dir, url: "http://" + nucleusIP + ":8080"}
	data := filepath.Join(dir, "data")
	cp, err := startProc("omni serve edge", tp.wan, nil, bin, "serve", "edge", "--data", data,
		"--edge-listen", nucleusIP+":8080", "--nucleus-listen", nucleusIP+":51820",
		"--rate-limit-token", "0", "--rate-limit-ip", "0", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	hc := httpClientIn(tp.wan, 2*time.Second)
	if err := waitFor(ctx, 20*time.Second, "omni serve ready", func() (bool, error) {
		if cp.exited() {
			return false, fmt.Errorf("omni serve exited:\n%s", cp.logs)
		}
		resp, err := hc.Get(o.url + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return nil, err
	}

	const email = "bench@example.com"
	if _, err := o.admin(ctx, "user", "create", "--data", data, "--email", email, "--password", "correct horse battery", "--plan", "pro", "--json"); err != nil {
		return nil, err
	}
	var k struct{ Key string }
	out, err := o.admin(ctx, "key", "create", "--data", data, "--email", email, "--json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(out, &k); err != nil || k.Key == "" {
		return nil, fmt.Errorf("key create: %v %s", err, out)
	}
	var n struct{ ID string }
	out, err = o.admin(ctx, "network", "create", "--data", data, "--email", email, "--name", "bench", "--json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(out, &n); err != nil || n.ID == "" {
		return nil, fmt.Errorf("network create: %v %s", err, out)
	}

	o.network, o.key, o.wan = n.ID, k.Key, tp.wan
	o.a = &omniEdge{name: "a", ns: tp.a, state: filepath.Join(dir, "state-a")}
	o.b = &omniEdge{name: "b", ns: tp.b, state: filepath.Join(dir, "state-b")}
	for _, e := range []*omniEdge{o.a, o.b} {
		args := []string{bin, "edge", "up", "--server", o.url,
			"--security-key", k.Key, "--name", e.name, "--network", n.ID, "--state", e.state, "--log-level", "warn"}
		if e == o.b {
			args = append(args, "--advertise-routes", lanPrefix)
		}
		if e.p, err = startProc("omni edge up ("+e.name+")", e.ns, nil, args...); err != nil {
			return nil, err
		}
	}
	for _, e := range []*omniEdge{o.a, o.b} {
		if err := waitFor(ctx, 30*time.Second, "omni edge "+e.name+" up", func() (bool, error) {
			if e.p.exited() {
				return false, fmt.Errorf("omni edge %s exited:\n%s", e.name, e.p.logs)
			}
			st, err := o.status(ctx, e)
			return err == nil && len(st.Networks) == 1 && st.Networks[0].Registered && st.Networks[0].Interface != "", nil
		}); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *omniRun) admin(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, append([]string{"edge", "admin"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("omni edge admin %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// status asks an edge's control socket through `omni edge status --json`.
func (o *omniRun) status(ctx context.Context, e *omniEdge) (daemon.Status, error) {
	var st daemon.Status
	out, err := runCmd(ctx, o.bin, "edge", "status", "--json", "--state", e.state)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal([]byte(out), &st)
	return st, err
}

// vip4 returns the edge's virtual IPv4 address and public key.
func (o *omniRun) identity(ctx context.Context, e *omniEdge) (vip, pub string, err error) {
	st, err := o.status(ctx, e)
	if err != nil {
		return "", "", err
	}
	if len(st.Networks) != 1 {
		return "", "", fmt.Errorf("edge %s: %d networks", e.name, len(st.Networks))
	}
	return strings.Split(st.Networks[0].VirtualIP, "/")[0], st.PublicKey, nil
}

// path returns how e reaches the peer with public key pub.
func (o *omniRun) path(ctx context.Context, e *omniEdge, pub string) daemon.Path {
	st, err := o.status(ctx, e)
	if err != nil || len(st.Networks) != 1 {
		return ""
	}
	for _, p := range st.Networks[0].Peers {
		if p.PublicKey == pub {
			return p.Path
		}
	}
	return ""
}

// waitFor polls cond every 250 ms until it holds, returns an error, or d
// has passed.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s", what, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// inNetns runs fn on an OS thread switched into the named namespace, on
// its own goroutine so that a thread that cannot switch back is dropped.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err) // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// httpClientIn returns an HTTP client whose connections are made from ns.
func httpClientIn(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(ns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// approveRoutes approves routes for edge e through the API, as the
// network's owner.
func (o *omniRun) approveRoutes(ctx context.Context, e *omniEdge, routes ...string) error {
	st, err := o.status(ctx, e)
	if err != nil {
		return err
	}
	c := client.New(o.url, httpClientIn(o.wan, 10*time.Second))
	if _, err := c.LoginSecurityKey(ctx, o.key); err != nil {
		return err
	}
	_, err = c.ApproveRoutes(ctx, o.network, st.DeviceID, routes)
	return err
}

// setPolicy sets the network's access policy through the API, as its
// owner.
func (o *omniRun) setPolicy(ctx context.Context, doc string) error {
	c := client.New(o.url, httpClientIn(o.wan, 10*time.Second))
	if _, err := c.LoginSecurityKey(ctx, o.key); err != nil {
		return err
	}
	_, err := c.SetPolicy(ctx, o.network, []byte(doc))
	return err
}
