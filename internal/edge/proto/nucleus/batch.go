package nucleus

import (
	"log/slog"
	"net"
	"net/netip"
)

// Batching limits. A read takes up to readBatch datagrams (each possibly
// a train of segments coalesced by UDP GRO); a write coalesces up to
// maxSegments frames of one size to one destination into one UDP GSO
// datagram of at most maxSegmentBytes.
const (
	readBatch       = 64
	maxSegments     = 64
	maxSegmentBytes = 64000
	groBufSize      = 1 << 16
)

// packet is one datagram read; b aliases the reader's buffers and stays
// valid until the next read.
type packet struct {
	b    []byte
	from netip.AddrPort
}

// batchConn is the socket Serve answers on: it reads and writes many
// datagrams per system call where the platform allows.
type batchConn interface {
	// read appends the datagrams of one batch to pkts (at least one);
	// their bytes stay valid until the next read.
	read(pkts []packet) ([]packet, error)
	// write sends out in order; a datagram that cannot be sent is
	// logged and dropped.
	write(out []outbound)
}

// newBatchConn wraps pc: recvmmsg/sendmmsg with UDP GRO/GSO for a
// *net.UDPConn on Linux, one datagram per system call otherwise.
func newBatchConn(pc net.PacketConn, log *slog.Logger) batchConn {
	if udp, ok := pc.(*net.UDPConn); ok {
		if c := newMmsgConn(udp, log); c != nil {
			return c
		}
	}
	return &singleConn{pc: pc, log: log, buf: make([]byte, MaxFrame+1)}
}

// singleConn reads and writes one datagram per system call.
type singleConn struct {
	pc  net.PacketConn
	log *slog.Logger
	buf []byte
}

func (c *singleConn) read(pkts []packet) ([]packet, error) {
	var (
		n    int
		from netip.AddrPort
		err  error
	)
	if udp, ok := c.pc.(*net.UDPConn); ok {
		n, from, err = udp.ReadFromUDPAddrPort(c.buf)
	} else {
		var a net.Addr
		n, a, err = c.pc.ReadFrom(c.buf)
		if ua, ok := a.(*net.UDPAddr); ok {
			from = ua.AddrPort()
		}
	}
	if err != nil {
		return pkts, err
	}
	return append(pkts, packet{b: c.buf[:n], from: unmap(from)}), nil
}

func (c *singleConn) write(out []outbound) {
	for _, o := range out {
		sendOne(c.pc, o, c.log)
	}
}

// sendOne writes one datagram.
func sendOne(pc net.PacketConn, o outbound, log *slog.Logger) {
	var err error
	if udp, ok := pc.(*net.UDPConn); ok {
		_, err = udp.WriteToUDPAddrPort(o.b, o.to)
	} else {
		_, err = pc.WriteTo(o.b, net.UDPAddrFromAddrPort(o.to))
	}
	if err != nil {
		log.Debug("nucleus send failed", "to", o.to.String(), "err", err)
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}

// splitSegments appends the datagrams of one read to pkts: b is one
// datagram, or with seg > 0 a train of seg-byte segments (the last may be
// shorter) that UDP GRO coalesced.
func splitSegments(pkts []packet, b []byte, seg int, from netip.AddrPort) []packet {
	if seg <= 0 || seg >= len(b) {
		return append(pkts, packet{b: b, from: from})
	}
	for len(b) > 0 {
		n := min(seg, len(b))
		pkts = append(pkts, packet{b: b[:n:n], from: from})
		b = b[n:]
	}
	return pkts
}

// sendGroup is out[start:end] sent as one datagram; seg > 0 when it holds
// several frames coalesced with UDP_SEGMENT (every one seg bytes but the
// last, which may be shorter).
type sendGroup struct{ start, end, seg int }

// planSends groups consecutive frames to one destination for UDP GSO:
// frames of the first one's size, up to one that is shorter, at most
// maxSegments frames and maxSegmentBytes in all. Frames larger than
// maxSeg (0: no GSO) go alone.
func planSends(groups []sendGroup, out []outbound, maxSeg int) []sendGroup {
	for i := 0; i < len(out); {
		seg := len(out[i].b)
		j, total := i+1, seg
		if seg <= maxSeg {
			for j < len(out) && j-i < maxSegments && out[j].to == out[i].to {
				n := len(out[j].b)
				if n > seg || n == 0 || total+n > maxSegmentBytes {
					break
				}
				total += n
				j++
				if n < seg {
					break
				}
			}
		}
		g := sendGroup{start: i, end: j}
		if j-i > 1 {
			g.seg = seg
		}
		groups = append(groups, g)
		i = j
	}
	return groups
}
