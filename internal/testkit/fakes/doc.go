// Package fakes holds in-memory node tools and snapshotters that record when
// each call happened, for fast tests and benchmarks of the orchestration.
// Every driver also has tests against its real counterpart.
//
// It is a test kit: only tests and benchmarks import it.
package fakes
