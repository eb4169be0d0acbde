// Package deploy holds what installs omni outside a Go toolchain — the
// compose file of two gateway replicas on PostgreSQL and Redis and the
// systemd units — and the tests that check them and the repository's
// Dockerfile with the tools that read them (docs/deploy.md).
package deploy
