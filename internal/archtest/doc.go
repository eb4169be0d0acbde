// Package archtest enforces the repository's structural rules in tests:
// every package has exactly one package doc comment, platform imports
// neither product, the edge and route products never import each other,
// and the request pipeline's stages import its contract, never the HTTP
// transport or a client format.
package archtest
