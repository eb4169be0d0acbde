// Package policies owns the gateway's routing policies (/api/policies):
// operator rules, kept in SQL (table gateway_policies), that decide which
// targets a request may be routed to — "these keys may only reach these
// providers" (key_providers), "never send to a provider outside this
// list" (provider_allowlist) and "block these models" (model_block). The
// rules are applied as a pipeline gate (pipeline.Gate and
// pipeline.ModelPolicy): every routed call of every modality is judged
// before it runs, a refused target is filtered out of the router's
// targets (router.WithFilter) so fallback moves on to the next allowed
// one, and a call none of whose targets remains is refused with 403
// naming the policy. Every write bumps the route store's epoch in its
// transaction; each replica follows it and installs the new rules.
package policies
