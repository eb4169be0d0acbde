//go:build !linux

package tunnel

import "net/netip"

func configureLink(string, int, netip.Prefix, netip.Prefix) error { return ErrNoKernelTUN }
func serveExit(string, netip.Prefix, netip.Prefix) error          { return ErrNoKernelTUN }
func unserveExit(string) error                                    { return nil }
func routeExit(string, int, int) error                            { return ErrNoKernelTUN }
func unrouteExit(int, int)                                        {}
func cleanupLeftovers(string, int, int)                           {}

func syncKernelRoutes(string, []netip.Prefix, []netip.Prefix) error {
	return ErrNoKernelTUN
}
func serveRoutes(string, netip.Prefix, netip.Prefix, []netip.Prefix, bool, bool) error {
	return ErrNoKernelTUN
}
func unserveRoutes(string) error { return nil }
