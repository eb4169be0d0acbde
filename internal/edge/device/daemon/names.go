package daemon

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// Names serves the networks' DNS names on this device and points the
// host's resolver at them (the CLI wires package names in). Its methods
// may be called from several goroutines.
type Names interface {
	// Set serves zone with recs on addr (the network's tunnel address)
	// and sends the host's queries for zone there through iface.
	// Called again with every change of the zone.
	Set(ctx context.Context, iface string, addr netip.Addr, zone string, recs []NameRecord) error
	// Remove stops serving a network's zone (the network went down).
	Remove(ctx context.Context, iface string, addr netip.Addr, zone string) error
}

// NameRecord is one member's name and addresses.
type NameRecord struct {
	Name       string // fully qualified, no trailing dot
	IPv4, IPv6 netip.Addr
}

// namesWait is how long one long poll of the names is held by the control
// plane: below the API client's 30 s timeout.
const namesWait = 25 * time.Second

// followNames keeps the network's names served on the device, following
// every change the control plane reports (a long poll), until ctx ends;
// then it stops serving them.
func (n *network) followNames(ctx context.Context, d *daemon) {
	addr := n.cfg.VirtualIP.Addr()
	var tag, zone string
	defer func() {
		if zone == "" {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.deps.Names.Remove(rctx, n.cfg.Interface, addr, zone); err != nil {
			n.log.Warn("removing the network's names failed", "err", err)
		}
	}()
	for attempt := 0; ctx.Err() == nil; {
		z, next, changed, err := d.api.Names(ctx, n.cfg.NetworkID, tag, namesWait)
		if err == nil && changed {
			n.setRecords(z.Zone, nameRecords(z))
			if zone != "" && zone != z.Zone {
				if err := d.deps.Names.Remove(ctx, n.cfg.Interface, addr, zone); err != nil {
					n.log.Warn("removing the network's old zone failed", "zone", zone, "err", err)
				}
			}
			if err = d.deps.Names.Set(ctx, n.cfg.Interface, addr, z.Zone, nameRecords(z)); err == nil {
				if zone != z.Zone {
					n.log.Info("serving the network's names", "zone", z.Zone, "names", len(z.Records))
				}
				zone, tag = z.Zone, next
				n.mu.Lock()
				n.zone, n.names = z.Zone, len(z.Records)
				n.mu.Unlock()
			}
		}
		if err == nil {
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		wait := client.Backoff(attempt, 0, d.rnd)
		attempt++
		n.log.Warn("following the network's names failed", "err", err, "retry_in", wait)
		if !d.sleep(ctx, wait) {
			return
		}
	}
}

// setRecords keeps the zone's records for status and ping (peer address
// → name), whether or not serving them worked.
func (n *network) setRecords(zone string, recs []NameRecord) {
	by := make(map[netip.Addr]NameRecord, 2*len(recs))
	for _, r := range recs {
		if r.IPv4.IsValid() {
			by[r.IPv4] = r
		}
		if r.IPv6.IsValid() {
			by[r.IPv6] = r
		}
	}
	n.mu.Lock()
	n.records, n.byAddr, n.recZone = recs, by, zone
	n.mu.Unlock()
}

// nameOf returns the record of the member at addr (IPv4 or IPv6).
func (n *network) nameOf(addr netip.Addr) (NameRecord, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.byAddr[addr]
	return r, ok
}

// peerName is the sessions' SessionHooks.PeerName: the member's full
// name, "" when unknown.
func (n *network) peerName(addr netip.Addr) string {
	r, _ := n.nameOf(addr)
	return r.Name
}

// shortName is a member's name without its zone ("robot" of
// "robot.home.omni.internal"); the first label when the zone is unknown.
func shortName(name, zone string) string {
	if zone != "" {
		if s, ok := strings.CutSuffix(name, "."+zone); ok && s != "" {
			return s
		}
	}
	s, _, _ := strings.Cut(name, ".")
	return s
}

func nameRecords(z wire.DNSZone) []NameRecord {
	out := make([]NameRecord, 0, len(z.Records))
	for _, r := range z.Records {
		rec := NameRecord{Name: r.Name}
		rec.IPv4, _ = netip.ParseAddr(r.VirtualIP)
		rec.IPv6, _ = netip.ParseAddr(r.VirtualIPv6)
		out = append(out, rec)
	}
	return out
}
