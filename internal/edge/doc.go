// Package edge is OmniEdge, the mesh VPN. It holds no code: its packages
// are grouped by where they run.
//
//   - server/ is the control plane `omni serve edge` runs: the domain and its
//     single coordinator (server/control), its stores (store, presence,
//     session, netevents), the HTTP API (api) and the assembly with its
//     runtime (app).
//   - device/ is what runs on a user's machine: the `omni edge up` daemon,
//     its data plane (dataplane: path choice; tunnel: TUN + WireGuard),
//     its DNS (names), the Go client of the API, and a user-hosted nucleus
//     (hosted).
//   - proto/ is what both sides speak and run: the API's JSON types (wire),
//     the nucleus signaling and relay protocol with its Server and Client
//     (nucleus), address math (ipam), X25519 keys (wgkey) and the access
//     policy (policy: the document the control plane validates, the packet
//     filter every device compiles from it).
//
// The device side never imports the server side, nor the server side the
// device side; proto imports neither (internal/archtest checks it).
// edgetest (an in-process control plane) and e2e (the real binary) are
// test support.
package edge
