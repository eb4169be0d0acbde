package tunnel

import (
	"crypto/hkdf"
	"crypto/sha256"
)

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
