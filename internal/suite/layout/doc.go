// Package layout checks that the packages import one another in the one
// direction docs/architecture.md draws: every import points to a lower
// layer (or along an arrow the document draws within a layer), no product
// code imports a test kit, and nothing imports a test suite. It holds tests
// only.
package layout
