// Package archtest enforces the repository's structural rules in tests:
// every package has exactly one package doc comment, platform imports
// neither product, the edge and route products never import each other,
// the request pipeline's stages import its contract, never the HTTP
// transport or a client format, the wire formats never import each other
// and all have the same role files (TestFormatLayout), and OmniEdge's
// device side, control plane and shared protocols (internal/edge/device,
// server, proto) import only what their side may.
package archtest
