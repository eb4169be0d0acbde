// Package wgkey owns the one X25519 key type of OmniEdge (a WireGuard
// private, public or preshared key) and its text forms: the standard base64
// WireGuard tools print and the control plane hands out, and the lowercase
// hex of the WireGuard configuration protocol. It imports only the standard
// library, so the device side and the nucleus both use it.
package wgkey

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Key is a 32-byte X25519 key (private, public or preshared).
type Key [32]byte

// ErrBadKey is returned when a key cannot be parsed.
var ErrBadKey = errors.New("wgkey: malformed key")

// GeneratePrivate returns a new, clamped X25519 private key. It never
// leaves the device: the daemon stores it and only publishes PublicKey.
func GeneratePrivate() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("wgkey: generate key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
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

// Hex is the lowercase hex form used by the WireGuard configuration
// protocol (wireguard-go's IpcSet and IpcGet).
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// MarshalText encodes k in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads the base64 form only (see [ParseBase64]).
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseBase64(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseBase64 reads a key in standard base64, as the control plane hands
// it out and WireGuard tools print it. An all-zero key parses; callers that
// need a key check [Key.IsZero].
func ParseBase64(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return Key{}, ErrBadKey
	}
	copy(k[:], b)
	return k, nil
}

// Parse reads a key in base64 (as printed by `wg`) or hex (as the
// WireGuard configuration protocol prints it).
func Parse(s string) (Key, error) {
	if len(s) == 2*len(Key{}) {
		var k Key
		if _, err := hex.Decode(k[:], []byte(s)); err != nil {
			return Key{}, ErrBadKey
		}
		return k, nil
	}
	return ParseBase64(s)
}

// ParsePublic reads a device's public key in standard base64, as the
// control plane hands it out: an empty, malformed or all-zero key is
// [ErrBadKey]. The control plane's and the user-hosted nucleus's
// directories both read member keys with it.
func ParsePublic(s string) (Key, error) {
	k, err := ParseBase64(s)
	if err != nil || k.IsZero() {
		return Key{}, ErrBadKey
	}
	return k, nil
}
