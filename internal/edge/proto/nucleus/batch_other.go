//go:build !linux

package nucleus

import (
	"log/slog"
	"net"
)

// newMmsgConn is Linux-only; elsewhere Serve reads one datagram at a time.
func newMmsgConn(*net.UDPConn, *slog.Logger) batchConn { return nil }
