// Package policy is a virtual network's access policy: which members may
// reach which members (and subnet routes) on which protocols and ports.
// The control plane parses and validates the document (Parse, Validate);
// every device compiles it for itself (Compile) into a Filter deciding, on
// the receiving side, each packet from the tunnel before it reaches the
// TUN or is forwarded by a subnet router. Standard library only, no I/O.
//
// # Document
//
//	{
//	  "version": 1,
//	  "groups": {"group:ops": ["laptop", "dev_AbC123", "tag:admin"]},
//	  "rules": [
//	    {"action": "accept", "src": ["group:ops", "100.66.0.0/24"],
//	     "dst": ["robot:22", "nas:80,443", "10.1.0.0/24:*"], "proto": "tcp"},
//	    {"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp"}
//	  ]
//	}
//
// Grammar (strict JSON: an unknown or repeated field is an error):
//
//	document    = null | { ["version": 1], ["groups": {group: [entry…]}], ["rules": [rule…] | null] }
//	rule        = { "action": "accept", "src": [source…], "dst": [destination…], ["proto": proto] }
//	source      = "*" | member | group | tag | address | prefix
//	entry       = member | group | tag | address | prefix     (a group's members)
//	destination = source ":" ports       (split at the last ':'; "[fd00::1]:22" brackets an IPv6 address)
//	ports       = "*" | range {"," range}
//	range       = port | port "-" port   (decimal 0–65535, low ≤ high; no service names)
//	proto       = "tcp" | "udp" | "icmp" | "*"   (omitted: "*", every IP protocol)
//	member      = device id ("dev_…") or DNS label ("robot"): 1–64 of A–Z a–z 0–9 _ -
//	group       = "group:" name;  tag = "tag:" name;  name = 1–64 of A–Z a–z 0–9 _ -
//	address     = "100.66.0.7" | "fd00::7";  prefix = "10.1.0.0/24" (no host bits set)
//
// Rules only grant: a packet passes when a rule's sources hold its source
// address and one of its destinations holds its destination address and
// port, with the rule's protocol. "icmp" is ICMP and ICMPv6. Ports
// restrict TCP and UDP only: a packet of a protocol without ports (ICMP,
// GRE …) matches only destinations whose ports are "*", and with "proto":
// "icmp" every destination's ports must be "*". A group holds members,
// tags, addresses, prefixes and groups that hold no groups (one level);
// "tag:x" is every member whose Member.Tags carry it. Names resolve to the
// members' virtual addresses, IPv4 and IPv6.
//
// An absent policy (an empty document, null, no "rules" or "rules": null,
// a nil *Policy) allows everything, as a network without one always has;
// "rules": [] denies every packet that is not a reply. Parse checks the
// document alone, within MaxSize bytes, MaxRules rules, MaxGroups groups
// and MaxSelectors sources, destinations and group entries in all;
// Validate checks its names against a Directory. Both fail with an *Error
// naming the JSON path and the line and column of the culprit:
//
//	rules[3].dst[1] (line 9, column 12): unknown port "ssh"
//
// # Compilation
//
// Compile keeps, for one receiving device, the part of each destination
// it receives for: its addresses and the routes it carries (subnet routes;
// 0.0.0.0/0 and ::/0 when it is an exit node). "*" as a destination is all
// of them. A name the directory no longer knows matches nothing, and the
// rest of the policy still applies. Each address family gets a table of
// the rules' source prefixes, sorted, each pointing at the closest one
// enclosing it: a lookup is a binary search and a walk up the few
// prefixes holding the source, testing their rules' protocols,
// destination ranges and ports, without allocating.
//
// # Filter
//
// Filter.Inbound passes a packet from the tunnel when
//
//   - it is a non-first fragment: it has no ports; its first fragment,
//     which must hold the TCP or UDP ports or is dropped, was filtered, and
//     no stack reassembles a datagram without it (nor accepts overlapping
//     fragments, RFC 5722);
//   - a rule allows it;
//   - it is ICMPv6 neighbour discovery (types 133–136) with hop limit 255,
//     which only a neighbour on the link can send;
//   - it answers a flow this device started (its Conntrack);
//   - it is an ICMP error (unreachable, packet too big, time exceeded,
//     parameter problem) quoting a packet this device sent in a tracked
//     flow or in reply to one the rules let in, so path MTU discovery works.
//
// The rest, and whatever is too short or malformed to decide, is dropped.
// Filter.Outbound sees what the device sends into the tunnel (its own and,
// on a subnet router, forwarded packets) and records the flows it starts:
// a TCP SYN without ACK, an ICMP echo request (by identifier), a UDP or
// other packet the rules would not let in the other way. Replies to what
// the rules let in are not recorded, so a policy revoking that access
// ends those flows at once. Flows idle out (TCPTimeout, UDPTimeout,
// ICMPTimeout; TCPClosingTimeout after a FIN or RST) on an injected clock,
// and past the table's size the least recently used goes.
//
// The Conntrack lives outside the compiled rules: a Filter from Compile or
// AllowAll has its own, WithConntrack copies one onto another, and an
// Atomic binds every Filter stored in it to its one Conntrack, so a policy
// swapped in live keeps the flows. Filters are immutable; they and the
// Conntrack (sharded, a mutex per shard) are safe for concurrent use.
package policy
