package names

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// The host resolver modes.
const (
	ModeResolved   = "resolved"    // systemd-resolved: a server and routing-only domains per interface
	ModeResolvConf = "resolv.conf" // rewrite resolv.conf: every query goes to the Server
	ModeOff        = "off"         // leave the host alone
)

// HostOptions configures a Host.
type HostOptions struct {
	StateDir   string                                                       // where the backup of the original resolv.conf is kept (required in ModeResolvConf)
	ResolvConf string                                                       // default "/etc/resolv.conf"
	Mode       string                                                       // "" (auto), ModeResolved, ModeResolvConf or ModeOff
	Run        func(ctx context.Context, name string, args ...string) error // runs resolvectl; default exec
	Log        *slog.Logger                                                 // default discard
}

// Host points the host's resolver at the Server for the networks' zones and
// puts it back as it was. Its methods are safe for concurrent use.
type Host struct {
	opt  HostOptions
	mode string
	log  *slog.Logger

	mu    sync.Mutex
	links map[string]*link // by interface
	seq   int
}

// link is what Apply was last given for one interface.
type link struct {
	server netip.Addr
	zones  []string
	seq    int // when its server was set: the highest is resolv.conf's nameserver
}

// NewHost returns a Host in opt.Mode; the auto mode ("") is ModeResolved
// when systemd-resolved runs (/run/systemd/resolve exists and resolvectl is
// on PATH), else ModeResolvConf. Unless the mode is ModeOff, a backup left
// in StateDir by a run that did not restore the host (a crash) is restored
// first.
func NewHost(opt HostOptions) (*Host, error) {
	if opt.ResolvConf == "" {
		opt.ResolvConf = "/etc/resolv.conf"
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Run == nil {
		opt.Run = runCommand
	}
	h := &Host{opt: opt, mode: opt.Mode, log: opt.Log, links: map[string]*link{}}
	if h.mode == "" {
		h.mode = detectMode("/run/systemd/resolve", exec.LookPath)
	}
	switch {
	case h.mode != ModeResolved && h.mode != ModeResolvConf && h.mode != ModeOff:
		return nil, fmt.Errorf("dns: unknown host resolver mode %q", opt.Mode)
	case h.mode == ModeResolvConf && opt.StateDir == "":
		return nil, errors.New("dns: resolv.conf mode needs a state directory")
	case h.mode != ModeOff:
		if err := h.restoreFile(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// detectMode is ModeResolved when runDir is a directory and resolvectl is
// found, else ModeResolvConf.
func detectMode(runDir string, lookPath func(string) (string, error)) string {
	if fi, err := os.Stat(runDir); err == nil && fi.IsDir() {
		if _, err := lookPath("resolvectl"); err == nil {
			return ModeResolved
		}
	}
	return ModeResolvConf
}

func runCommand(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Mode returns the mode in use: ModeResolved, ModeResolvConf or ModeOff.
func (h *Host) Mode() string { return h.mode }

// Upstreams returns the nameservers (port 53) of the original resolv.conf,
// read from the backup while one exists (the host's file is ours then),
// else from the file itself: where the Server forwards queries outside its
// zones. A file we wrote, and an address Apply was given, never count. In
// ModeResolved this is usually systemd-resolved's stub (127.0.0.53), which
// sends only the zones to the Server, so forwarding there does not loop.
// Read it again after Apply: a file changed under us is the new original.
func (h *Host) Upstreams() []netip.AddrPort {
	h.mu.Lock()
	defer h.mu.Unlock()
	content := ""
	if b, err := h.loadBackup(); b != nil && err == nil {
		content = b.Original
	} else if c, err := os.ReadFile(h.opt.ResolvConf); err == nil {
		content = string(c)
	}
	if strings.HasPrefix(content, marker) {
		return nil
	}
	var out []netip.AddrPort
	for _, line := range strings.Split(content, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		ours := false
		for _, l := range h.links {
			ours = ours || l.server.Unmap() == a.Unmap()
		}
		if err == nil && !ours {
			out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
		}
	}
	return out
}

// Apply points the resolver at server for zones, names of interface iface.
// It is idempotent and called again whenever the zones change; no zones is
// Remove. In ModeResolved it runs `resolvectl dns <iface> <server>`,
// `resolvectl domain <iface> ~<zone>...` and `resolvectl default-route
// <iface> false` (only logged when it fails: old systemd lacks it; the
// routing-only domains alone already keep other names off the link). In
// ModeResolvConf the file gets a single nameserver, the server of the
// interface applied last with a new server (one Server listens on every
// tunnel address and answers every zone, so any one will do), and every
// interface's zones in front of the original search domains.
func (h *Host) Apply(ctx context.Context, iface string, server netip.Addr, zones []string) error {
	if iface == "" || len(iface) > 15 || iface[0] == '-' || iface == "." || iface == ".." || strings.ContainsAny(iface, "/: \t\n\r\x00") {
		return fmt.Errorf("dns: invalid interface name %q", iface)
	}
	if !server.IsValid() || server.IsUnspecified() {
		return fmt.Errorf("dns: invalid server address %v", server)
	}
	var clean []string
	for _, z := range zones {
		n, ok := normName(z)
		if !ok {
			return fmt.Errorf("dns: invalid zone %q", z)
		}
		if !slices.Contains(clean, n) {
			clean = append(clean, n)
		}
	}
	if len(clean) == 0 {
		return h.Remove(ctx, iface)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l := h.links[iface]; l == nil || l.server != server {
		h.seq++
		h.links[iface] = &link{server: server, seq: h.seq}
	}
	h.links[iface].zones = clean
	switch h.mode {
	case ModeResolved:
		domains := []string{"domain", iface}
		for _, z := range clean {
			domains = append(domains, "~"+z)
		}
		for _, args := range [][]string{{"dns", iface, server.String()}, domains} {
			if err := h.opt.Run(ctx, "resolvectl", args...); err != nil {
				return fmt.Errorf("dns: %w", err)
			}
		}
		if err := h.opt.Run(ctx, "resolvectl", "default-route", iface, "false"); err != nil {
			h.log.Warn("dns: resolvectl default-route failed", "iface", iface, "err", err)
		}
	case ModeResolvConf:
		return h.writeFile()
	}
	return nil
}

// Remove undoes Apply for iface (its network was left). In ModeResolvConf
// the file keeps the other interfaces' zones, or is restored when none is
// left.
func (h *Host) Remove(ctx context.Context, iface string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.links[iface] == nil {
		return nil
	}
	delete(h.links, iface)
	switch {
	case h.mode == ModeResolved:
		if err := h.opt.Run(ctx, "resolvectl", "revert", iface); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	case h.mode == ModeResolvConf && len(h.links) > 0:
		return h.writeFile()
	case h.mode == ModeResolvConf:
		return h.restoreFile()
	}
	return nil
}

// Restore puts the host's resolver back as it was (daemon shutdown).
func (h *Host) Restore(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for iface := range h.links {
		if h.mode == ModeResolved {
			if err := h.opt.Run(ctx, "resolvectl", "revert", iface); err != nil {
				errs = append(errs, fmt.Errorf("dns: %w", err))
			}
		}
		delete(h.links, iface)
	}
	if h.mode != ModeOff {
		errs = append(errs, h.restoreFile())
	}
	return errors.Join(errs...)
}
