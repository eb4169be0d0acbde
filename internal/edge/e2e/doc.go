// Package e2e holds end-to-end tests that build the real omni binary and
// run it as separate processes: the admin CLI, and several `omni serve
// edge` replicas sharing PostgreSQL and Redis. It has no non-test code.
package e2e
