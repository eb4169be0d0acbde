//go:build !linux

package tunnel

import "net"

// Without Linux's UDP_SEGMENT and UDP_GRO the bind sends and receives one
// datagram per packet.

var gsoOOBSize = 0

func tuneSocket(*net.UDPConn) (tx, rx bool) { return false, false }

func gsoSize([]byte) int { return 0 }

func appendGSO(oob []byte, _ uint16) []byte { return oob }

func gsoRefused(error) bool { return false }

func segmentSize([]byte) int { return 0 }

func gsoTooLarge(error) bool { return false }

func socketUnread(*net.UDPConn) bool { return false }
