//go:build !linux

package main

import (
	"fmt"
	"os"
)

// main only says so: the benchmark needs Linux network namespaces.
func main() {
	fmt.Fprintln(os.Stderr, "dataplanebench: needs Linux (network namespaces, TUN, nftables)")
	os.Exit(2)
}
