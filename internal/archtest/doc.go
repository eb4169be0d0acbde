// Package archtest enforces the repository's structural rules in tests:
// every package has exactly one package doc comment, platform imports
// neither product, and the edge and route products never import each other.
package archtest
