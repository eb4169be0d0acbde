package cli

import (
	"log/slog"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/dataplane"
)

// edgeDataPlane is the one place where `omni edge up` gets its data plane:
// the WireGuard tunnel factory and the nucleus session factory of
// internal/edge/device/dataplane (see daemon.Tunnel and daemon.Session, and
// "Edge daemon" in docs/operating.md for what each adapter provides).
func edgeDataPlane(log *slog.Logger) (daemon.TunnelFactory, daemon.SessionFactory) {
	return dataplane.New(dataplane.Options{Log: log})
}

// edgePinger answers `omni edge ping` in the daemon: ICMP echo through the
// tunnel (dataplane.ICMP).
func edgePinger() daemon.Pinger { return dataplane.ICMP{} }
