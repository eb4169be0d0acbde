package tunnel

import (
	"encoding/binary"
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketBuffer is the send and receive buffer size asked for: enough for
// a few batches of 64 KiB offloaded datagrams at gigabit rates.
const socketBuffer = 7 << 20

// gsoOOBSize is the control space of one UDP_SEGMENT or UDP_GRO message.
var gsoOOBSize = unix.CmsgSpace(2)

// tuneSocket enlarges the socket buffers (beyond net.core.[rw]mem_max with
// CAP_NET_ADMIN), turns on UDP_GRO and reports which UDP offloads the
// kernel offers: tx is UDP_SEGMENT (GSO), rx is UDP_GRO. Failures only
// cost speed, so they are not errors.
func tuneSocket(c *net.UDPConn) (tx, rx bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, false
	}
	rc.Control(func(fd uintptr) {
		s := int(fd)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer)
		_, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		tx = err == nil
		// UDP_GRO before 5.12 cannot be read back and had bugs; leave it
		// off there.
		if kernelAtLeast(5, 12) && unix.SetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil {
			v, err := unix.GetsockoptInt(s, unix.IPPROTO_UDP, unix.UDP_GRO)
			rx = err == nil && v == 1
		}
	})
	return tx, rx
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var v [2]int
	i := 0
	for _, c := range u.Release {
		if c >= '0' && c <= '9' {
			v[i] = v[i]*10 + int(c-'0')
			continue
		}
		if i++; i == len(v) {
			break
		}
	}
	return v[0] > major || v[0] == major && v[1] >= minor
}

// gsoSize returns the segment size of a UDP_GRO control message in oob,
// or 0 when the datagram was not coalesced.
func gsoSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2 {
			return int(binary.NativeEndian.Uint16(data))
		}
		oob = rest
	}
	return 0
}

// appendGSO appends a UDP_SEGMENT control message with segment size size
// to oob, which must have room for gsoOOBSize more bytes.
func appendGSO(oob []byte, size uint16) []byte {
	n := len(oob)
	if cap(oob)-n < gsoOOBSize {
		return oob
	}
	oob = oob[:n+gsoOOBSize]
	clear(oob[n:])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[n+unix.CmsgLen(0):], size)
	return oob
}

// gsoRefused reports whether a send error means the kernel will not
// segment for this socket: EIO comes from udp_send_skb when the device
// has no checksum offload, which UDP_SEGMENT requires.
func gsoRefused(err error) bool {
	return errors.Is(err, unix.EIO)
}

// segmentSize returns the size of the UDP_SEGMENT control message
// appendGSO wrote into oob, or 0.
func segmentSize(oob []byte) int {
	if len(oob) < gsoOOBSize {
		return 0
	}
	return int(binary.NativeEndian.Uint16(oob[unix.CmsgLen(0):]))
}

// gsoTooLarge reports whether a send error means the segment size exceeds
// what the path takes without IP fragmentation, which UDP_SEGMENT does not
// do.
func gsoTooLarge(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EMSGSIZE)
}

// socketUnread reports whether datagrams wait in the socket's receive
// queue (FIONREAD: the size of the next one).
func socketUnread(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n > 0
}
