//go:build !linux

// Command dataplanebench measures the OmniEdge data plane over Linux
// network namespaces; on other systems it only says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "dataplanebench: needs Linux (network namespaces, TUN, nftables)")
	os.Exit(2)
}
