// Package nucleus owns the OmniEdge signaling and relay protocol: the
// Server that `omni serve` runs on UDP :51820 for every network, and the
// Client an edge uses for one network over the UDP socket it shares with
// WireGuard.
//
// It sits with the shared protocols (internal/edge/proto) rather than on
// the server side because both sides run it: the control plane serves the
// built-in nucleus (server/app), a user's machine serves its own (`omni
// edge nucleus`, device/hosted) with the same Server, and every device
// speaks to either with the Client. The frame format, Server and Client
// share their keys, replay window and cookie code, so they stay one
// package; it imports only the other shared protocols.
//
// # Frames
//
// Every datagram is one frame (at most MaxFrame bytes, integers big-endian).
// A control frame is
//
//	0     1   0xFF
//	1     2   'O' 'N'
//	3     1   version (4)
//	4     1   type
//	5     1   n = length of the network id (4..64)
//	6     n   network id, in clear so the nucleus can pick the key
//	6+n   8   timestamp, Unix milliseconds
//	14+n  12  random nonce
//	26+n  ..  body (per type)
//	end-32 32 HMAC-SHA256(frame key, every byte before it)
//
// and a RELAY frame, which carries one WireGuard packet, is
//
//	0     2   0xFF 'R'
//	2     2   timestamp, Unix seconds modulo 2^16
//	4     4   source relay id
//	8     4   destination relay id
//	12    8   HMAC-SHA256(K, bytes 0..11), first 8 bytes
//	20    ..  payload (≤ MaxRelayPayload)
//
// RelayOverhead (20) keeps a full-size packet of a 1420-byte tunnel within
// a 1500-byte IPv4 underlay. The tag covers the header only: WireGuard
// authenticates the payload end to end.
//
// Keys. The network key K = HKDF-SHA256(secret, salt none, info
// "omniedge/nucleus/v1"), 32 bytes, where secret is the network's
// secret_key (as the join response gives it) taken as bytes, keys the
// RELAY tags, which every member and the nucleus check. Control frames
// are keyed per device: the nucleus has a static X25519 key pair (the
// built-in one derived from the master key, a user-hosted one kept in its
// state directory), whose public key the join answer gives. Frames
// between a device D and the nucleus N (every request, and everything
// the nucleus sends a device) carry the MAC of
//
//	K_dev = HKDF-SHA256(DH(D, N) ‖ K, salt none, info "omniedge/nucleus/v4/device" ‖ D ‖ N)
//
// which the device computes with its private key and the nucleus with
// its own: no other member can. PING and PONG between devices A and B
// carry the MAC of K_pair = HKDF-SHA256(DH(A, B) ‖ K, salt none, info
// "omniedge/nucleus/v4/pair" ‖ min(A, B) ‖ max(A, B)). COOKIE is keyed
// with the MAC of the request it answers. Every frame key mixes in K, so
// it rotates with the secret. A network id is "vn_" and 1 to 61 characters
// of the base64url alphabet; a frame naming anything else is dropped
// before any lookup. A WireGuard packet starts with a little-endian u32
// type 1–4 (bytes 01..04, 00, 00, 00), so the 0xFF first byte never
// collides: IsSignal tests the prefix only.
//
// A receiver drops, and counts, any frame that is malformed, fails the
// MAC (the nucleus checks a request under the frame key of the device key
// it names; a client checks the nucleus's frames under its own, a PING
// or PONG under the key of the current peer it names), carries a
// timestamp more than Window (60 s) from its clock, or
// repeats a nonce seen within twice the window (a bounded cache per
// network: when full it forgets the oldest nonce and refuses frames dated
// at or before it). RELAY frames are authenticated (their header) and
// time-checked but have no nonce: WireGuard rejects replayed packets
// itself. The nucleus never answers a frame that fails these checks.
//
// # Bodies
//
// A key is 32 bytes (X25519 public key). An IPv4 is 4 bytes, an IPv6 16
// (all zero: none). An endpoint is a family byte (0 none, 4, 6), the
// address and a u16 port. A list of local endpoints is a count byte
// (at most MaxLocalEndpoints) and the endpoints. A peer entry is key,
// relay id (u32), IPv4, IPv6, observed endpoint, local endpoints. A
// cookie is CookieSize (16) bytes; every request (c→n) ends with one,
// all zero until the nucleus handed one out.
//
//	REGISTER      c→n  key, IPv4, IPv6, local endpoints, cookie
//	REGISTER_ACK  n→c  observed endpoint, keepalive (u32 ms), version (u32), relay id (u32)
//	KEEPALIVE     c→n  key, version held (u32), cookie
//	PEERS         n→c  version (u32), part (u16), parts (u16), count (u16), peer entries
//	PEER_UPDATE   n→c  version (u32), event (1 join, 2 leave, 3 update), peer entry
//	PUNCH_REQUEST c→n  key of the sender, key of the target, cookie
//	PUNCH         n→c  peer entry to send to now
//	RELAY         both (its own layout, above)
//	LEAVE         c→n  key, cookie
//	ERROR         n→c  code (1 not registered, 2 unknown peer, 3 network full), u8 length, text
//	PING          c→c  key of the sender, key of the target (sent straight to the peer)
//	PONG          c→c  key of the sender, key of the target (to the PING's source address)
//	COOKIE        n→c  nonce of the request it answers, cookie; MAC keyed with that request's MAC
//	REKEY         n→c  version of the network's new secret (u32)
//
// # Behaviour
//
// Return routability first. A request whose cookie is not valid for its
// source address and port is answered with a COOKIE and nothing else: the
// nucleus does no lookup for it and sends nothing larger than it, and
// the bytes it sends to one source that has not proven it receives are
// capped (Options.UnverifiedBytes). A cookie is a MAC of the source
// address under a secret of the nucleus that changes every two minutes;
// only a receiver at that address learns it, so a spoofed source cannot
// make the nucleus send peer lists, updates or punches anywhere. The
// client repeats the request with the cookie at once (the COOKIE's MAC,
// keyed with the request's own MAC, proves it answers that request).
//
// Lookups. The nucleus asks its Directory (a consumer-owned interface:
// the control plane, or the poll of a user-hosted nucleus) for a network's
// secret and the device key bound to each member's address, off the
// packet loop on a few workers fed by a bounded queue, within a budget
// per source (an IPv4 address or an IPv6 /64); a frame waits (parked,
// bounded) for its network's answer. Answers are cached and refreshed in
// the background while in use; unknown ids are remembered briefly.
// Invalidate reloads a network at once.
//
// The nucleus keeps a peer table per network keyed by public key and
// records the source address of each REGISTER and KEEPALIVE as the peer's
// observed endpoint. A REGISTER is admitted only for the key bound to the
// address it names (the peer's addresses are the binding's). The
// Diffie–Hellman of a binding is computed on its first frame and kept
// across answers (a frame costs none); a REGISTER of a key not bound yet
// costs one, within its source's lookup budget, before it may ask for a
// reload. REGISTER,
// PUNCH_REQUEST and roaming KEEPALIVE frames are rate-limited per source
// (each may make the nucleus send to every member); LEAVE and
// PUNCH_REQUEST must come from the named peer's registered endpoint.
// Every join, leave or change (including a new source address: roaming)
// bumps the network's version and is pushed at once as PEER_UPDATE to the
// other members; a REGISTER is answered with REGISTER_ACK and the full
// PEERS list (split into parts of at most 1200 bytes). A KEEPALIVE is
// answered with REGISTER_ACK, plus PEERS (at most once a second) when the
// version the client holds differs, so a lost update heals within one
// interval; a registered peer's KEEPALIVEs are budgeted per peer
// (Options.PeerKeepalives), so a flood from one member is dropped. A KEEPALIVE from an unknown key gets ERROR 1 and the client
// registers again. Peers silent for three keepalive intervals expire and
// their leave is pushed; LEAVE removes at once, and so does a reload that
// no longer binds a peer's key to its address. PUNCH_REQUEST makes the
// nucleus send PUNCH to both sides, each naming the other. Every
// registration gets a random non-zero relay id, unique on the nucleus,
// kept while the peer stays registered. RELAY frames are forwarded
// unchanged (the sender's tag; one check per hop, no re-tagging) only
// when both relay ids are registered in one network, the frame comes from
// the source's observed endpoint and its tag verifies under that
// network's key, and are counted per network.
//
// A new secret (a member left or was removed): on the reload the nucleus
// sends REKEY, signed with the old key, to every peer still bound; their
// daemons fetch the secret from the control plane and call
// Client.SetSecret. For RekeyGrace the nucleus still accepts frame keys
// under the old network key from registered peers at their registered
// endpoint (no REGISTER, no roaming), and signs what it sends each peer
// with the key that peer last used.
//
// PING and PONG never involve the nucleus: an edge sends PING to a peer's
// observed or local endpoint, the peer answers PONG to the PING's source
// address, and a PONG tells the sender that the direct path works both
// ways. A client accepts them from any address (the MAC, timestamp and
// nonce checks still apply); every other frame must come from the nucleus.
//
// Signaling authenticates the device: a request names its sender's key
// and is signed with that device's frame key, so a current member holding
// the secret cannot speak for another member (register, keep alive or
// move it, punch or leave in its name), nor, even from the nucleus's
// address, forge what the nucleus tells another member, nor forge a PING
// or PONG naming another member. The nucleus ties each virtual address to
// one device key, and WireGuard (with a preshared key derived from the
// secret) authenticates every device end to end. A RELAY header is only
// tagged with the network key: a member can build one naming another
// member's relay id, but the nucleus forwards it only from that member's
// observed endpoint, and the payload is a WireGuard packet its receiver
// authenticates. A former member holds an old secret, which neither signs
// frames nor completes a handshake once the secret rotated.
package nucleus
