// Package fleet simulates quiesce at fleet scale against a simulated EC2
// (internal/testkit/ec2sim) that enforces AWS's request buckets per account
// and region and its per-volume snapshot limits, in time scaled 100 times
// (QUIESCE_FLEET_SCALE): one 10,000-node, 40,000-volume cluster with a
// CreateSnapshots per node and a CreateSnapshot per volume, a wave of 100
// clusters of 100 nodes submitted at once, and the retention of 40,000
// snapshots. Every figure is in simulated time, next to the physical limit
// the EC2 budget sets. Run it with `make bench-fleet`; docs/benchmarks.md
// records the figures.
package fleet
