//go:build linux

package nucleus

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// mmsgConn reads with recvmmsg and writes with sendmmsg. With UDP_GRO the
// kernel may hand over a train of datagrams from one source in one read
// (split by the segment size it reports); with UDP_SEGMENT frames of one
// size to one destination leave in one send. Not safe for concurrent use
// (Serve's goroutine owns it; the lookup workers and the sweep write
// through pc).
type mmsgConn struct {
	pc  *ipv6.PacketConn // batch calls are the same for either family
	log *slog.Logger
	gro bool
	// maxSeg is the largest frame coalesced with UDP_SEGMENT; 0 when the
	// socket or kernel refuses GSO. A refused size lowers it.
	maxSeg int

	rmsgs   []ipv6.Message
	wmsgs   []ipv6.Message
	groups  []sendGroup
	sendBuf []byte
	addrs   map[netip.AddrPort]*net.UDPAddr
}

var segmentCmsgSpace = unix.CmsgSpace(2)

func newMmsgConn(udp *net.UDPConn, log *slog.Logger) batchConn {
	rc, err := udp.SyscallConn()
	if err != nil {
		return nil
	}
	c := &mmsgConn{pc: ipv6.NewPacketConn(udp), log: log, addrs: map[netip.AddrPort]*net.UDPAddr{}}
	_ = rc.Control(func(fd uintptr) {
		if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT); err == nil {
			c.maxSeg = MaxFrame
		}
		c.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	size := MaxFrame + 1
	if c.gro {
		size = groBufSize
	}
	c.rmsgs = make([]ipv6.Message, readBatch)
	for i := range c.rmsgs {
		c.rmsgs[i].Buffers = [][]byte{make([]byte, size)}
		c.rmsgs[i].OOB = make([]byte, 0, 64)
	}
	log.Debug("nucleus socket", "recvmmsg", true, "udp_gro", c.gro, "udp_gso", c.maxSeg > 0)
	return c
}

func (c *mmsgConn) read(pkts []packet) ([]packet, error) {
	for i := range c.rmsgs {
		c.rmsgs[i].OOB = c.rmsgs[i].OOB[:cap(c.rmsgs[i].OOB)]
	}
	n, err := c.pc.ReadBatch(c.rmsgs, 0)
	if err != nil {
		return pkts, err
	}
	for i := range c.rmsgs[:n] {
		m := &c.rmsgs[i]
		var from netip.AddrPort
		if ua, ok := m.Addr.(*net.UDPAddr); ok {
			from = unmap(ua.AddrPort())
		}
		seg := 0
		if c.gro {
			seg = groSegment(m.OOB[:m.NN])
		}
		pkts = splitSegments(pkts, m.Buffers[0][:m.N], seg, from)
	}
	return pkts, nil
}

// groSegment returns the UDP_GRO segment size in a read's control
// messages, 0 when the datagram was not coalesced.
func groSegment(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2 {
			return int(*(*uint16)(unsafe.Pointer(&data[0])))
		}
		oob = rest
	}
	return 0
}

// appendSegmentCmsg appends a UDP_SEGMENT control message of size seg.
func appendSegmentCmsg(oob []byte, seg int) []byte {
	off := len(oob)
	oob = append(oob, make([]byte, segmentCmsgSpace)...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[off+unix.CmsgLen(0)])) = uint16(seg)
	return oob
}

func (c *mmsgConn) addr(a netip.AddrPort) *net.UDPAddr {
	if ua := c.addrs[a]; ua != nil {
		return ua
	}
	if len(c.addrs) >= 4096 {
		clear(c.addrs)
	}
	ua := net.UDPAddrFromAddrPort(a)
	c.addrs[a] = ua
	return ua
}

func (c *mmsgConn) write(out []outbound) {
	for len(out) > 0 {
		out = c.writeSome(out)
	}
}

// writeSome sends out and returns what is left to send again when the
// kernel refused a GSO send (maxSeg is lower then).
func (c *mmsgConn) writeSome(out []outbound) []outbound {
	c.groups = planSends(c.groups[:0], out, c.maxSeg)
	total := 0
	for _, g := range c.groups {
		if g.seg > 0 {
			for _, o := range out[g.start:g.end] {
				total += len(o.b)
			}
		}
	}
	if cap(c.sendBuf) < total {
		c.sendBuf = make([]byte, 0, max(total, 2*cap(c.sendBuf)))
	}
	buf := c.sendBuf[:0]
	for len(c.wmsgs) < len(c.groups) {
		c.wmsgs = append(c.wmsgs, ipv6.Message{Buffers: make([][]byte, 1), OOB: make([]byte, 0, segmentCmsgSpace)})
	}
	msgs := c.wmsgs[:len(c.groups)]
	for i, g := range c.groups {
		m := &msgs[i]
		m.Addr = c.addr(out[g.start].to)
		m.OOB = m.OOB[:0]
		if g.seg == 0 {
			m.Buffers[0] = out[g.start].b
			continue
		}
		off := len(buf)
		for _, o := range out[g.start:g.end] {
			buf = append(buf, o.b...)
		}
		m.Buffers[0] = buf[off:]
		m.OOB = appendSegmentCmsg(m.OOB, g.seg)
	}
	for start := 0; start < len(msgs); {
		n, err := c.pc.WriteBatch(msgs[start:], 0)
		if err != nil {
			g := c.groups[start]
			if g.seg > 0 && c.gsoRefused(err, g.seg) {
				c.clearMsgs(msgs)
				return out[g.start:]
			}
			c.log.Debug("nucleus send failed", "to", out[g.start].to.String(), "err", err)
			n = 1
		}
		start += max(n, 1)
	}
	c.clearMsgs(msgs)
	return nil
}

// clearMsgs drops the references to sent buffers.
func (c *mmsgConn) clearMsgs(msgs []ipv6.Message) {
	for i := range msgs {
		msgs[i].Buffers[0] = nil
	}
}

// gsoRefused reports whether err is the kernel refusing a UDP_SEGMENT
// send of seg-byte segments, and lowers maxSeg so that it is not tried
// again: EIO (no checksum offload) turns GSO off, EMSGSIZE or EINVAL (a
// segment larger than the path MTU allows: the kernel does not fragment
// GSO segments) turn it off for that size and above.
func (c *mmsgConn) gsoRefused(err error, seg int) bool {
	switch {
	case errors.Is(err, unix.EIO), errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.EOPNOTSUPP):
		c.maxSeg = 0
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EMSGSIZE):
		c.maxSeg = seg - 1
		if c.maxSeg < 512 {
			c.maxSeg = 0
		}
	default:
		return false
	}
	c.log.Debug("nucleus: UDP GSO refused", "segment", seg, "err", err, "max_segment", c.maxSeg)
	return true
}
