package cli

import "github.com/omniedge/omni/internal/edge/daemon"

// edgeDataPlane is the one place where `omni edge up` gets its data plane:
// the WireGuard tunnel factory and the nucleus session factory (see
// daemon.Tunnel and daemon.Session, and "Edge daemon" in
// docs/operating.md for what each adapter must provide). Until both are
// wired in it returns nil and `omni edge up` stops with
// daemon.ErrNoDataPlane before contacting the control plane.
func edgeDataPlane() (daemon.TunnelFactory, daemon.SessionFactory) {
	return nil, nil
}
