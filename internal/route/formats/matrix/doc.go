// Package matrix pins every pairing of a client dialect with a provider
// wire format. Its tests carry canonical scenarios (parallel tool calls,
// system prompts, images, cached-token usage, thinking with signatures)
// through real wire bytes of one format and out through another, streaming
// and not, and compare the result with golden files. It holds no
// production code: translation lives only in the format packages, and
// every path goes through the canonical model.
package matrix
