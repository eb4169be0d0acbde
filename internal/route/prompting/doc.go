// Package prompting owns the gateway-wide rewrites of chat requests set
// in the management API: the global system prompt (injected into every
// request of every dialect, but for the gateway keys that opt out) and
// the thinking budget (the budget a request asking for reasoning gets,
// and the effort-to-tokens mapping the provider adapters use). Both are
// stored in the route store's settings table, read by every replica
// within a second, and applied by a pipeline.Rewriter on the canonical
// request before the idempotency and cache keys, the gates and the
// router see it.
package prompting
