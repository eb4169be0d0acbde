//go:build !linux

package tunnel

import "net"

func setMark(*net.UDPConn, uint32) error { return nil }

func ttlOOB(bool, int) []byte { return nil }
