// Package names owns a device's DNS in its virtual networks: every device of
// a network is reachable as <device>.<network>.<suffix> (for example
// robot.home.omni.internal), like Tailscale's MagicDNS.
//
// It has two halves, both driven by the edge daemon per joined network:
//
//   - [Server] answers the networks' zones (A, AAAA, PTR; authoritative,
//     TTL 5 s because names change live) from the records it is given, on
//     the device's tunnel addresses, over UDP and TCP, and forwards every
//     other query to the upstream nameservers.
//   - [Host] points the host's resolver at that server for the zones only
//     (split DNS through systemd-resolved's routing-only domains) or, where
//     plain /etc/resolv.conf is all there is, for everything (the server
//     then forwards what is not ours to the original nameservers), and puts
//     the host back as it was on shutdown, or at the next start after a
//     crash.
//
// # Security decisions
//
//   - Only the host itself may query the server: a query whose source is
//     neither a loopback address nor one of the addresses the server listens
//     on gets REFUSED and nothing is forwarded. With the weak host model a
//     LAN host can route a packet to the tunnel address, and every network
//     peer reaches it through the tunnel; neither may use the device as an
//     open resolver or an amplifier. A TCP connection from such a source is
//     closed when accepted. (A message the DNS library cannot parse is
//     answered FORMERR whatever its source; that answer is never larger than
//     the query.)
//   - UDP queries larger than 512 bytes are dropped; malformed ones are
//     dropped or answered FORMERR; opcodes other than QUERY get NOTIMP.
//   - TCP: at most [MaxTCPConns] connections at once (one more is closed at
//     once), [TCPIdleTimeout] between queries on a connection.
//   - Forwarding: at most Options.MaxInflight queries in flight (past it:
//     SERVFAIL at once), each with a fresh random id from a fresh socket,
//     an answer accepted only if its question matches; never to an address
//     the server itself listens on.
//   - A zone holds at most [MaxZoneRecords] records (the rest are ignored
//     and logged); a name longer than 253 bytes, not under its zone, or not
//     made of labels of 1 to 63 letters, digits, '-' or '_' (not starting
//     with '-') is ignored.
//   - Host configuration: zone and interface names are validated before
//     they reach resolvectl's argv or resolv.conf; the original resolv.conf
//     is kept in the state directory (mode 0600) and is never restored over
//     a file someone else changed after we wrote it.
package names
