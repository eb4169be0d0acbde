package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ICMP is the daemon's Pinger (`omni edge ping`): an ICMP echo request
// from this device's virtual address to a peer's, routed by the kernel
// into the network's tunnel like any application's packet. Its round trip
// is what traffic sees over whatever path WireGuard uses at that moment,
// direct or relayed, encryption and a handshake (when the session was
// idle) included. It needs a raw ICMP socket (root or CAP_NET_RAW, as the
// daemon runs) or, failing that, an unprivileged ICMP datagram socket
// (net.ipv4.ping_group_range).
type ICMP struct{}

// Echo implements daemon.Pinger.
func (ICMP) Echo(ctx context.Context, src, dst netip.Addr, seq int) (time.Duration, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() != dst.Is4() {
		return 0, fmt.Errorf("ping %s from %s: the families differ", dst, src)
	}
	raw, dgram, proto := "ip4:icmp", "udp4", 1
	var req, rep icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		raw, dgram, proto = "ip6:ipv6-icmp", "udp6", 58
		req, rep = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	datagram := false
	c, err := icmp.ListenPacket(raw, src.String())
	if err != nil {
		var derr error
		if c, derr = icmp.ListenPacket(dgram, src.String()); derr != nil {
			return 0, fmt.Errorf("ICMP socket on %s: %w", src, errors.Join(err, derr))
		}
		datagram = true // the kernel picks the id and hands back only our replies
	}
	defer c.Close()
	var tok [10]byte // id (2) and a token the reply must echo
	_, _ = rand.Read(tok[:])
	id, data := int(binary.BigEndian.Uint16(tok[:2])), append([]byte("omni edge ping "), tok[2:]...)
	b, err := (&icmp.Message{Type: req, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: data}}).Marshal(nil)
	if err != nil {
		return 0, err
	}
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice()}
	if datagram {
		to = &net.UDPAddr{IP: dst.AsSlice()}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	if _, err := c.WriteTo(b, to); err != nil {
		return 0, fmt.Errorf("send echo request to %s: %w", dst, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		rtt := time.Since(start)
		if fromAddr(from) != dst {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != rep {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.Seq != seq&0xffff || (!datagram && e.ID != id) || !bytes.Equal(e.Data, data) {
			continue
		}
		return rtt, nil
	}
}

func fromAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
