// Package daemon is the OmniEdge edge daemon behind `omni edge up`: it keeps
// the device's identity (X25519 key, hardware uuid, saved tokens) in a state
// directory, logs in to the control plane, registers the device, joins its
// networks, brings up one tunnel and one nucleus session per network,
// heartbeats every 30 s with jitter and applies the exit node the heartbeat
// selects, and answers `omni edge status`, `ping`, `netcheck` and `down` on
// a unix socket in the state directory (peers named from the DNS names it
// follows, ping targets resolved from them).
//
// The data plane is reached only through the small interfaces declared
// here (Tunnel, TunnelFactory, Session, SessionFactory, and the optional
// NucleusProber and Pinger), so the WireGuard tunnel and the nucleus
// client plug in as adapters and tests use fakes.
// All waiting goes through the injected Clock.
package daemon
