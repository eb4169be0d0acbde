// Package e2e holds the gateway's process-level tests: the real `omni`
// binary, run as several replicas against shared PostgreSQL and Redis,
// and the official npm clients (npm/, run with node) against a gateway.
package e2e
