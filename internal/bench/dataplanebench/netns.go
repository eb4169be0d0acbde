//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/netns"
)

// The underlay, in documentation ranges only, inside namespaces this
// program creates:
//
//	[A 198.51.100.10/30] --veth-- [wan 198.51.100.9 | 198.51.100.13] --veth-- [B 198.51.100.14/30]
//	                               lo 198.51.100.1: omni serve edge (API :8080, nucleus :51820)
//
// wan forwards between its two /30s, so every path A→B crosses its
// forward hook, where the relayed measurement drops direct UDP.
const (
	nucleusIP = "198.51.100.1"
	wanToA    = "198.51.100.9"
	underA    = "198.51.100.10"
	wanToB    = "198.51.100.13"
	underB    = "198.51.100.14"
	// The LAN behind B, reached through B as a subnet router.
	lanPrefix = "10.88.0.0/24"
	lanRouter = "10.88.0.1"
	lanHost   = "10.88.0.2"

	// The plain wireguard-go tunnel's addresses (private range).
	wgA = "10.201.0.1"
	wgB = "10.201.0.2"
)

// topology holds the namespaces of one run; close removes them.
type topology struct {
	tag        string
	wan, a, b  string
	lan        string // a host on a LAN behind B (lanHost), reached through B as subnet router
	namespaces []string
}

// runCmd runs a short command, killed after 30 s, and returns its
// combined output.
func runCmd(ctx context.Context, args ...string) (string, error) { return netns.Cmd(ctx, args...) }

// newTopology builds the underlay with namespace names carrying a random
// tag. On error the namespaces made so far are removed.
func newTopology(ctx context.Context) (tp *topology, err error) {
	tp = &topology{tag: netns.Tag()}
	defer func() {
		if err != nil {
			tp.close()
		}
	}()
	for _, r := range []struct {
		role string
		dst  *string
	}{{"wan", &tp.wan}, {"a", &tp.a}, {"b", &tp.b}, {"lan", &tp.lan}} {
		name := "omnibench-" + tp.tag + "-" + r.role
		if err := netns.Add(ctx, name); err != nil {
			return nil, err
		}
		tp.namespaces = append(tp.namespaces, name)
		*r.dst = name
	}
	if _, err := runCmd(ctx, "ip", "-n", tp.wan, "addr", "add", nucleusIP+"/32", "dev", "lo"); err != nil {
		return nil, err
	}
	if err := netns.Sysctl(ctx, tp.wan, "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if err := netns.Veth(ctx, tp.wan, "toA", wanToA+"/30", tp.a, "wan", underA+"/30"); err != nil {
		return nil, err
	}
	if err := netns.Veth(ctx, tp.wan, "toB", wanToB+"/30", tp.b, "wan", underB+"/30"); err != nil {
		return nil, err
	}
	if err := netns.Veth(ctx, tp.b, "lan", lanRouter+"/24", tp.lan, "eth0", lanHost+"/24"); err != nil {
		return nil, err
	}
	for _, r := range [][2]string{{tp.a, wanToA}, {tp.b, wanToB}} {
		if _, err := runCmd(ctx, "ip", "-n", r[0], "route", "add", "default", "via", r[1]); err != nil {
			return nil, err
		}
	}
	return tp, nil
}

// close deletes the namespaces (and with them the veths), whatever the
// context's state.
func (tp *topology) close() {
	for i := len(tp.namespaces) - 1; i >= 0; i-- {
		if err := netns.Del(tp.namespaces[i]); err != nil {
			fmt.Fprintf(os.Stderr, "dataplanebench: removing %s: %v\n", tp.namespaces[i], err)
		}
	}
	tp.namespaces = nil
}

// proc is a long-running child process started in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	once sync.Once
}

// procs are the children still running, stopped on the way out.
var (
	procsMu sync.Mutex
	procs   []*proc
)

// startProc runs args in ns (ip netns exec execs the program, so signals
// reach it directly) and registers it for stopAll.
func startProc(name, ns string, env []string, args ...string) (*proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &proc{name: name, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop interrupts the process and kills it if it has not ended in 10 s.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// stopAll stops every process started, newest first.
func stopAll() {
	procsMu.Lock()
	ps := procs
	procs = nil
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
