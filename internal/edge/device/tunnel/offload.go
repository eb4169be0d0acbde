package tunnel

import (
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// UDP offloads (Linux): with UDP_SEGMENT one sendmsg carries up to 64
// same-size datagrams that the kernel (or the NIC) cuts apart, and with
// UDP_GRO one recvmsg returns several datagrams of one flow glued
// together, with their size in a control message. This is what
// wireguard-go's own bind does; the bind here adds the demultiplexing of
// signaling and relay frames after the split.
const (
	// maxSegments is the kernel's limit of datagrams per UDP_SEGMENT send
	// (and per UDP_GRO receive).
	maxSegments = 64
	// Largest UDP payload of one send: a 64 KiB IP packet less the headers
	// (the IPv6 payload length does not count the IPv6 header).
	maxPayload4 = 1<<16 - 1 - 20 - 8
	maxPayload6 = 1<<16 - 1 - 8
	// oobCap is the control space of each message: room for UDP_SEGMENT
	// or UDP_GRO with some to spare.
	oobCap = 64
	// maxSegmentSize is the largest UDP_SEGMENT size.
	maxSegmentSize = 1<<16 - 1
)

// coalesce fills msgs with the datagrams bufs for addr and returns how
// many messages it used. A run of datagrams of one size of at most gso
// bytes (the last of which may be shorter, ending the run) goes into one
// message with a UDP_SEGMENT control message, as long as the run has at
// most maxSegments datagrams, at most maxPayload bytes and fits in the
// capacity of its first buffer, which it is appended to. Any other
// datagram, and every one when gso is 0, gets its own message.
func coalesce(msgs []ipv6.Message, bufs [][]byte, addr net.Addr, gso, maxPayload int) int {
	base, size, count, ended := -1, 0, 0, false
	for _, p := range bufs {
		if base >= 0 && size > 0 && size <= gso && !ended && count < maxSegments {
			cur := msgs[base].Buffers[0]
			if len(p) <= size && len(cur)+len(p) <= maxPayload && len(p) <= cap(cur)-len(cur) {
				msgs[base].Buffers[0] = append(cur, p...)
				count++
				ended = len(p) < size
				continue
			}
		}
		if count > 1 {
			msgs[base].OOB = appendGSO(msgs[base].OOB[:0], uint16(size))
		}
		base++
		m := &msgs[base]
		m.Buffers[0], m.Addr, m.OOB = p, addr, m.OOB[:0]
		size, count, ended = len(p), 1, false
	}
	if count > 1 {
		msgs[base].OOB = appendGSO(msgs[base].OOB[:0], uint16(size))
	}
	return base + 1
}

// split cuts the got messages read into msgs[first:] at their UDP_GRO
// segment size and spreads the datagrams over msgs from index 0, in
// order, each into its own buffer; it returns how many datagrams there
// are. Reading into the tail leaves room for them as long as each read
// message carries at most len(msgs)/(len(msgs)-first) of them; datagrams
// that would overwrite a message not yet split are dropped.
func split(msgs []ipv6.Message, first, got int) int {
	n := 0
	for i := first; i < first+got; i++ {
		m := &msgs[i]
		src := m.Buffers[0][:m.N]
		size := gsoSize(m.OOB[:m.NN])
		if size <= 0 || size > len(src) {
			size = len(src)
		}
		addr := m.Addr
		for off := 0; off < len(src) || off == 0; off += size {
			if n > i {
				break // no room: drop the rest
			}
			seg := src[off:min(off+size, len(src))]
			d := &msgs[n]
			if n == i && off == 0 {
				d.N = len(seg) // in place already
			} else {
				d.N = copy(d.Buffers[0], seg)
			}
			d.Addr = addr
			n++
			if size == 0 {
				break
			}
		}
	}
	return n
}

// sendState is the scratch space of one Send, pooled so that sending
// allocates nothing.
type sendState struct {
	msgs   []ipv6.Message
	frames [][]byte // relay frames, slices of arena
	ends   []int    // where each relay frame ends in arena
	arena  []byte   // relay frames back to back
	addr   net.UDPAddr
}

var sendPool = sync.Pool{New: func() any { return newSendState(conn.IdealBatchSize) }}

func newSendState(n int) *sendState {
	return &sendState{msgs: newMessages(n), addr: net.UDPAddr{IP: make(net.IP, 0, 16)}}
}

func newMessages(n int) []ipv6.Message {
	msgs := make([]ipv6.Message, n)
	for i := range msgs {
		msgs[i].Buffers = make(net.Buffers, 1)
		msgs[i].OOB = make([]byte, 0, oobCap)
	}
	return msgs
}

func getSendState(n int) *sendState {
	s := sendPool.Get().(*sendState)
	if len(s.msgs) < n {
		s.msgs = newMessages(n)
	}
	return s
}

func putSendState(s *sendState) {
	for i := range s.msgs {
		s.msgs[i].Buffers[0], s.msgs[i].Addr = nil, nil
	}
	clear(s.frames)
	sendPool.Put(s)
}

// setUDPAddr points ua (whose IP has room for 16 bytes) at ap.
func setUDPAddr(ua *net.UDPAddr, ap netip.AddrPort) {
	a := ap.Addr()
	if a.Is4() {
		b := a.As4()
		ua.IP = append(ua.IP[:0], b[:]...)
	} else {
		b := a.As16()
		ua.IP = append(ua.IP[:0], b[:]...)
	}
	ua.Port, ua.Zone = int(ap.Port()), a.Zone()
}

// writeAll sends msgs with as few sendmmsg calls as it takes and returns
// how many of them were sent.
func writeAll(bc batchConn, msgs []ipv6.Message) (int, error) {
	sent := 0
	for sent < len(msgs) {
		n, err := bc.WriteBatch(msgs[sent:], 0)
		if err != nil {
			return sent, err
		}
		sent += n
	}
	return sent, nil
}
