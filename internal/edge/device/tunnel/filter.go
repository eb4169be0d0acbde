package tunnel

import "golang.zx2c4.com/wireguard/tun"

// PacketFilter decides, on the receiving side, what the tunnel hands the
// host: Inbound sees every packet WireGuard decrypted, before it reaches
// the TUN (and so before the host forwards it on a subnet route), and
// false drops it; Outbound sees every packet the host sends into the
// tunnel (a stateful filter records the flows it starts, so that their
// replies pass). Both are called from several goroutines at once and
// must not block.
type PacketFilter interface {
	Inbound(pkt []byte) bool
	Outbound(pkt []byte)
}

// filteredTUN runs a PacketFilter over a TUN device's packets.
type filteredTUN struct {
	tun.Device
	f PacketFilter
}

func (t *filteredTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.Device.Read(bufs, sizes, offset)
	for i := range n {
		t.f.Outbound(bufs[i][offset : offset+sizes[i]])
	}
	return n, err
}

// Write hands the host the packets the filter lets in. The dropped ones
// count as written: WireGuard has nothing to do about them.
func (t *filteredTUN) Write(bufs [][]byte, offset int) (int, error) {
	keep := bufs[:0]
	for _, b := range bufs {
		if t.f.Inbound(b[offset:]) {
			keep = append(keep, b)
		}
	}
	if len(keep) == 0 {
		return len(bufs), nil
	}
	if _, err := t.Device.Write(keep, offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}
