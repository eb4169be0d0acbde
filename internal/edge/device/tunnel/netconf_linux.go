package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// configureLink sets the MTU, adds both virtual addresses (without
// duplicate address detection, so v6 is usable at once) and brings the link
// up.
func configureLink(name string, mtu int, a4, a6 netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return err
	}
	for _, p := range []netip.Prefix{a4, a6} {
		if !p.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   p.Addr().AsSlice(),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	return netlink.LinkSetUp(link)
}

// nftTable is the nftables table (family inet) of an interface's exit
// serving rules.
func nftTable(ifname string) string {
	var b strings.Builder
	b.WriteString("omniedge_")
	for _, r := range ifname {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// serveExit enables forwarding and (re)creates the interface's nftables
// table in one transaction.
func serveExit(ifname string, net4, net6 netip.Prefix) error {
	if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if net6.IsValid() {
		if err := writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	t := nftTable(ifname)
	var masq strings.Builder
	if net4.IsValid() {
		fmt.Fprintf(&masq, "    ip saddr %s oifname != %q masquerade\n", net4, ifname)
	}
	if net6.IsValid() {
		fmt.Fprintf(&masq, "    ip6 saddr %s oifname != %q masquerade\n", net6, ifname)
	}
	script := fmt.Sprintf(`table inet %[1]s {}
delete table inet %[1]s
table inet %[1]s {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
%[2]s  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname %[3]q accept
    oifname %[3]q ct state established,related accept
  }
}
`, t, masq.String(), ifname)
	return nft(script)
}

// unserveExit deletes the interface's nftables table, if any.
func unserveExit(ifname string) error { return dropTable(nftTable(ifname)) }

// dropTable deletes an nftables table (family inet), if there is one.
func dropTable(t string) error {
	return nft(fmt.Sprintf("table inet %[1]s {}\ndelete table inet %[1]s\n", t))
}

func writeSysctl(path, val string) error {
	if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", path, err)
	}
	return nil
}

var families = []int{netlink.FAMILY_V4, netlink.FAMILY_V6}

// exitRules are the policy rules of exit routing: main without default
// routes first, then everything not carrying the mark to table.
func exitRules(family, table, prio int) []*netlink.Rule {
	suppress := netlink.NewRule()
	suppress.Family = family
	suppress.Table = unix.RT_TABLE_MAIN
	suppress.SuppressPrefixlen = 0
	suppress.Priority = prio
	mark := netlink.NewRule()
	mark.Family = family
	mark.Table = table
	mark.Mark = uint32(table)
	mask := uint32(0xffffffff)
	mark.Mask = &mask
	mark.Invert = true
	mark.Priority = prio + 1
	return []*netlink.Rule{suppress, mark}
}

// routeExit installs the default route in table and the two rules, for
// IPv4 and IPv6. IPv6 is skipped when the host has none.
func routeExit(ifname string, table, prio int) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	_ = writeSysctl("/proc/sys/net/ipv4/conf/all/src_valid_mark", "1")
	for _, fam := range families {
		dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		if fam == netlink.FAMILY_V6 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Table: table, Scope: netlink.SCOPE_UNIVERSE})
		if err != nil {
			if fam == netlink.FAMILY_V6 && noIPv6(err) {
				continue
			}
			return fmt.Errorf("default route in table %d: %w", table, err)
		}
		for _, r := range exitRules(fam, table, prio) {
			if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("rule %s: %w", r, err)
			}
		}
	}
	return nil
}

func noIPv6(err error) bool {
	return errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP)
}

// unrouteExit removes this table's rules and routes, including those left
// by a previous run that crashed.
func unrouteExit(table, prio int) {
	for _, fam := range families {
		rules, err := netlink.RuleList(fam)
		if err == nil {
			for _, r := range rules {
				ours := r.Priority == prio && r.Table == unix.RT_TABLE_MAIN && r.SuppressPrefixlen == 0 ||
					r.Priority == prio+1 && r.Table == table
				if ours {
					r := r
					_ = netlink.RuleDel(&r)
				}
			}
		}
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err == nil {
			for _, rt := range routes {
				rt := rt
				_ = netlink.RouteDel(&rt)
			}
		}
	}
}

// cleanupLeftovers removes what a previous run on this interface and table
// may have left behind after a crash.
func cleanupLeftovers(ifname string, table, prio int) {
	unrouteExit(table, prio)
	if _, err := exec.LookPath("nft"); err == nil {
		_ = unserveExit(ifname)
	}
}

// syncKernelRoutes adds and deletes routes through ifname in the main
// table.
func syncKernelRoutes(ifname string, add, del []netip.Prefix) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	route := func(p netip.Prefix) *netlink.Route {
		return &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.SCOPE_LINK,
			Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	}
	var errs []error
	for _, p := range del {
		if err := netlink.RouteDel(route(p)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", p, err))
		}
	}
	for _, p := range add {
		if err := netlink.RouteReplace(route(p)); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// fwdTable is the nftables table of an interface's forward rules.
func fwdTable(ifname string) string { return nftTable(ifname) + "_fwd" }

// serveRoutes (re)writes the interface's forward table: from the tunnel,
// only the routes served are forwarded (everything when exit is set),
// masqueraded when snat is set; replies pass.
func serveRoutes(ifname string, net4, net6 netip.Prefix, routes []netip.Prefix, snat, exit bool) error {
	var v4, v6 []string
	for _, r := range routes {
		if r.Addr().Is4() {
			v4 = append(v4, r.String())
		} else {
			v6 = append(v6, r.String())
		}
	}
	if len(v4) > 0 {
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if len(v6) > 0 {
		if err := writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	var fwd, nat strings.Builder
	if exit {
		fmt.Fprintf(&fwd, "    iifname %q accept\n", ifname)
	}
	if len(v4) > 0 {
		fmt.Fprintf(&fwd, "    iifname %q ip daddr { %s } accept\n", ifname, strings.Join(v4, ", "))
		if snat && net4.IsValid() {
			fmt.Fprintf(&nat, "    ip saddr %s ip daddr { %s } oifname != %q masquerade\n", net4, strings.Join(v4, ", "), ifname)
		}
	}
	if len(v6) > 0 {
		fmt.Fprintf(&fwd, "    iifname %q ip6 daddr { %s } accept\n", ifname, strings.Join(v6, ", "))
		if snat && net6.IsValid() {
			fmt.Fprintf(&nat, "    ip6 saddr %s ip6 daddr { %s } oifname != %q masquerade\n", net6, strings.Join(v6, ", "), ifname)
		}
	}
	script := fmt.Sprintf(`table inet %[1]s {}
delete table inet %[1]s
table inet %[1]s {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
%[2]s  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    oifname %[3]q ct state established,related accept
    iifname %[3]q ct state established,related accept
%[4]s    iifname %[3]q drop
  }
}
`, fwdTable(ifname), nat.String(), ifname, fwd.String())
	return nft(script)
}

// unserveRoutes deletes the interface's forward table, if any.
func unserveRoutes(ifname string) error { return dropTable(fwdTable(ifname)) }
