package nucleus

import (
	"bytes"
	"crypto/ecdh"
	"sync"
	"sync/atomic"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// dhKeys are the frame keys of one pair of X25519 keys: the
// Diffie–Hellman of this side's private key and the other side's public
// key, computed once on first use, and the keys derived from it for the
// last two network keys (the current one and, after a rotation, the one
// before). A frame therefore costs no Diffie–Hellman once the pair spoke.
// Safe for concurrent use.
type dhKeys struct {
	priv  *ecdh.PrivateKey
	peer  wgkey.Key // the other side's public key
	label string    // DeviceKeyInfo or PairKeyInfo
	a, b  wgkey.Key // the public keys the info names, in order

	once    sync.Once
	shared  []byte // nil when the Diffie–Hellman failed (a key of low order)
	derived atomic.Pointer[[2]derivedKey]
}

type derivedKey struct{ net, key []byte }

// deviceKeys are the keys of the frames between a device and its
// nucleus, on either side: self is this side's key pair, peer the other
// side's public key.
func deviceKeys(priv *ecdh.PrivateKey, self, peer wgkey.Key, selfIsNucleus bool) *dhKeys {
	dev, nuc := self, peer
	if selfIsNucleus {
		dev, nuc = peer, self
	}
	return &dhKeys{priv: priv, peer: peer, label: DeviceKeyInfo, a: dev, b: nuc}
}

// pairKeys are the keys of the PING and PONG frames between this device
// (priv, self) and the peer.
func pairKeys(priv *ecdh.PrivateKey, self, peer wgkey.Key) *dhKeys {
	a, b := self, peer
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return &dhKeys{priv: priv, peer: peer, label: PairKeyInfo, a: a, b: b}
}

// key returns the frame key under the network key netKey, or nil when
// the other side's public key is of low order (nothing may be accepted
// from it, nothing sent).
func (d *dhKeys) key(netKey []byte) []byte {
	if p := d.derived.Load(); p != nil {
		for i := range p {
			if p[i].key != nil && bytes.Equal(p[i].net, netKey) {
				return p[i].key
			}
		}
	}
	d.once.Do(func() {
		if s, err := sharedSecret(d.priv, d.peer); err == nil {
			d.shared = s
		}
	})
	if d.shared == nil {
		return nil
	}
	k := frameKey(d.shared, netKey, d.label, d.a, d.b)
	next := [2]derivedKey{{net: netKey, key: k}}
	if p := d.derived.Load(); p != nil {
		next[1] = p[0]
	}
	d.derived.Store(&next)
	return k
}
