// Package testenv starts the real NATS JetStream server in-process for tests
// and benchmarks, creates quiesce's topology on it, and offers helpers to
// submit requests and wait for jobs. A Cluster is three such servers that a
// test can stop and restart. It also holds what every package's TestMain
// shares: the goleak exceptions (LeakOptions) and the switch that makes a
// missing external dependency a failure instead of a skip (Missing).
//
// It is a test kit: only tests and benchmarks import it.
package testenv
