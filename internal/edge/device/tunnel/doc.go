// Package tunnel owns one network's packet machinery on a device: a
// WireGuard (wireguard-go, in-process) device on a real TUN interface and
// its interface configuration, one UDP socket shared between WireGuard and
// the nucleus signaling protocol (see [Bind]), the peer set applied as
// given (each peer's endpoint, direct or relay, is the caller's choice),
// and the exit-node routing on both sides. It decides no path: choosing
// between direct and relay is package dataplane's.
//
// The package knows nothing about the nucleus protocol itself: the nucleus
// client plugs in through the [Signaling] interface, which tells signaling
// datagrams apart from WireGuard packets and wraps or unwraps relay frames.
//
// Every peer of a network shares a preshared key derived from the network
// secret ([PresharedKey]), so a device that knows a peer's public key but
// not the network's secret cannot complete a handshake.
package tunnel
