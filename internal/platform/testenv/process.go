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
