package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var omni struct {
	once sync.Once
	path string
	err  error
}

// OmniBinary builds cmd/omni once per test process and returns its path,
// for tests that run the real binary.
func OmniBinary(t testing.TB) string {
	t.Helper()
	omni.once.Do(func() {
		dir, err := os.MkdirTemp("", "omni-bin-")
		if err != nil {
			omni.err = err
			return
		}
		omni.path = filepath.Join(dir, "omni")
		out, err := exec.Command("go", "build", "-o", omni.path, "github.com/omniedge/omni/cmd/omni").CombinedOutput()
		if err != nil {
			omni.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if omni.err != nil {
		t.Fatal(omni.err)
	}
	return omni.path
}

// FreeTCP returns a loopback TCP address nothing listens on now.
func FreeTCP(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// FreeUDP returns a loopback UDP address nothing is bound to now.
func FreeUDP(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// WaitOK polls url every 50 ms until it answers 200 or d has passed, and
// reports whether it did.
func WaitOK(url string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Output is a process's combined output, safe to read while it runs.
type Output struct {
	mu sync.Mutex
	b  []byte
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b = append(o.b, p...)
	return len(p), nil
}

// String is the output so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.b)
}

// Start starts cmd with its output kept and stops it when t ends: an
// interrupt, then a kill if it has not exited within 15 s; its output is
// logged, headed by name, if t failed. exited is closed once it exits.
func Start(t testing.TB, name string, cmd *exec.Cmd) (out *Output, exited <-chan struct{}) {
	t.Helper()
	out = &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, out.String())
		}
	})
	return out, done
}
