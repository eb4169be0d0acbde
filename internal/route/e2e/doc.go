// Package e2e holds the gateway's process-level tests: the real `omni`
// binary, run as several replicas against shared PostgreSQL and Redis.
package e2e
