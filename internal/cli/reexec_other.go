//go:build !unix

package cli

// Reexec is nil where a process cannot replace itself: `omni serve`
// then answers a restart request with 501.
var Reexec func() error
