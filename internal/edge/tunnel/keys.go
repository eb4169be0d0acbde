package tunnel

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Key is a 32-byte X25519 key (private, public or preshared).
type Key [32]byte

// ErrBadKey is returned when a key cannot be parsed.
var ErrBadKey = errors.New("tunnel: malformed key")

// GeneratePrivateKey returns a new, clamped X25519 private key. It never
// leaves the device: the daemon stores it and only publishes PublicKey.
func GeneratePrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("tunnel: generate key: %w", err)
	}
	k.clamp()
	return k, nil
}

func (k *Key) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// PublicKey returns the X25519 public key of the private key k.
func (k Key) PublicKey() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil { // only possible for a wrong length, which Key rules out
		panic(err)
	}
	var pub Key
	copy(pub[:], priv.PublicKey().Bytes())
	return pub
}

// IsZero reports whether k is all zeros (no key).
func (k Key) IsZero() bool { return k == Key{} }

// String is the standard base64 form used by WireGuard tools. Do not log
// private keys: use [Key.PublicKey] first.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is the lowercase hex form used by the WireGuard configuration protocol.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// MarshalText encodes k in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText accepts base64 (standard) or hex.
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseKey parses a key in base64 (as printed by `wg`) or hex.
func ParseKey(s string) (Key, error) {
	var k Key
	switch len(s) {
	case 44:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			return Key{}, ErrBadKey
		}
		copy(k[:], b)
	case 64:
		if _, err := hex.Decode(k[:], []byte(s)); err != nil {
			return Key{}, ErrBadKey
		}
	default:
		return Key{}, ErrBadKey
	}
	return k, nil
}

// pskInfo is the HKDF info string of the WireGuard preshared key.
const pskInfo = "omniedge wg psk"

// PresharedKey derives the WireGuard preshared key every peer of a network
// uses from the network's secret: HKDF-SHA256(secret, no salt, info
// "omniedge wg psk").
func PresharedKey(networkSecret []byte) [32]byte {
	var k [32]byte
	b, err := hkdf.Key(sha256.New, networkSecret, nil, pskInfo, 32)
	if err != nil { // only possible for an output longer than 255 hash blocks
		panic(err)
	}
	copy(k[:], b)
	return k
}
