package tunnel

import (
	"fmt"
	"net/netip"
	"slices"
)

// Subnet routes, both sides.
//
// A peer's AllowedIPs beyond its own addresses (Peer.AllowedIPs: the
// subnet routes it carries) are also routed to the interface in the main
// table, so the host sends that traffic into the tunnel; WireGuard picks
// the peer by the most specific allowed prefix. The routes go when the
// peer no longer carries them, and with the interface.
//
// The router side (ServeRoutes) forwards what arrives through the tunnel
// for the routes it carries onto its other interfaces, masquerading the
// network's addresses by default (SNAT: the LAN needs no route back to
// the network). Everything else arriving through the tunnel for another
// destination is dropped in the forward hook (nftables table
// "omniedge_<interface>_fwd"), whatever the host's own forwarding
// settings: a member cannot use any device as a router into its LAN, only
// one whose owner approved the route it carries — unless it serves as the
// network's exit node (ServeExit), which forwards everything by design.

// syncRoutesLocked installs the kernel routes of every peer's AllowedIPs
// and removes those no longer wanted.
func (d *Device) syncRoutesLocked() error {
	if !d.sys {
		return nil
	}
	want := map[netip.Prefix]bool{}
	for _, p := range d.peers {
		for _, a := range p.AllowedIPs {
			want[a.Masked()] = true
		}
	}
	var add, del []netip.Prefix
	for p := range want {
		if !d.kroutes[p] {
			add = append(add, p)
		}
	}
	for p := range d.kroutes {
		if !want[p] {
			del = append(del, p)
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	err := syncKernelRoutes(d.cfg.Name, add, del)
	if d.kroutes == nil {
		d.kroutes = map[netip.Prefix]bool{}
	}
	for _, p := range del {
		delete(d.kroutes, p)
	}
	for _, p := range add {
		d.kroutes[p] = true
	}
	if err != nil {
		return fmt.Errorf("tunnel: subnet routes: %w", err)
	}
	return nil
}

// ServeRoutes makes this device the router of routes (the subnet routes
// it carries for its network; none stops): forwarding is enabled and
// traffic from the tunnel to them accepted, with the network's addresses
// masqueraded when snat is set.
func (d *Device) ServeRoutes(routes []netip.Prefix, snat bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if !d.sys {
		return ErrNoKernelTUN
	}
	rs := slices.Clone(routes)
	slices.SortFunc(rs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if slices.Equal(rs, d.routed) && snat == d.snat {
		return nil
	}
	d.routed, d.snat = rs, snat
	return d.applyForwardLocked()
}

// applyForwardLocked writes the forward rules for the routes served and
// the exit serving state.
func (d *Device) applyForwardLocked() error {
	if err := serveRoutes(d.cfg.Name, d.cfg.Addr4.Masked(), d.cfg.Addr6.Masked(), d.routed, d.snat, d.serving); err != nil {
		return fmt.Errorf("tunnel: serve routes: %w", err)
	}
	return nil
}
