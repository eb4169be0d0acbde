package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/names"
)

// edgeNames serves the networks' names for the daemon (daemon.Names): one
// name server for every zone, listening on each network's tunnel
// address, and the host's resolver pointed at it (names.Host).
type edgeNames struct {
	srv  *names.Server
	host *names.Host
	log  *slog.Logger

	mu     sync.Mutex
	zones  map[string]map[string]bool // interface → its zones
	listen map[string]netip.Addr      // interface → the address served on it
}

// newEdgeNames builds the names of `omni edge up`; mode "off" serves
// nothing (nil).
func newEdgeNames(stateDir, mode, resolvConf string, log *slog.Logger) (*edgeNames, error) {
	if mode == "off" {
		return nil, nil
	}
	host, err := names.NewHost(names.HostOptions{StateDir: stateDir, Mode: mode, ResolvConf: resolvConf, Log: log})
	if err != nil {
		return nil, err
	}
	srv := names.NewServer(names.Options{Upstreams: host.Upstreams(), Log: log})
	log.Info("names: the host's resolver is configured through " + host.Mode())
	return &edgeNames{srv: srv, host: host, log: log, zones: map[string]map[string]bool{}, listen: map[string]netip.Addr{}}, nil
}

func (e *edgeNames) Set(ctx context.Context, iface string, addr netip.Addr, zone string, recs []daemon.NameRecord) error {
	rs := make([]names.Record, len(recs))
	for i, r := range recs {
		rs[i] = names.Record{Name: r.Name, IPv4: r.IPv4, IPv6: r.IPv6}
	}
	e.srv.SetZone(zone, rs)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.listen[iface] != addr {
		if err := e.srv.Listen(addr); err != nil {
			return err
		}
		e.listen[iface] = addr
	}
	if e.zones[iface] == nil {
		e.zones[iface] = map[string]bool{}
	}
	if e.zones[iface][zone] {
		return nil
	}
	e.zones[iface][zone] = true
	return e.host.Apply(ctx, iface, addr, keys(e.zones[iface]))
}

func (e *edgeNames) Remove(ctx context.Context, iface string, addr netip.Addr, zone string) error {
	e.srv.RemoveZone(zone)
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.zones[iface], zone)
	if len(e.zones[iface]) > 0 {
		return e.host.Apply(ctx, iface, addr, keys(e.zones[iface]))
	}
	delete(e.zones, iface)
	delete(e.listen, iface)
	e.srv.Unlisten(addr)
	return e.host.Remove(ctx, iface)
}

// Close restores the host's resolver and stops the server.
func (e *edgeNames) Close(ctx context.Context) error {
	return errors.Join(e.host.Restore(ctx), e.srv.Close())
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
