// Package simnode simulates an Apache Cassandra node on the local filesystem:
// a memtable that a writer appends rows to, data directories holding
// SSTable-like file sets, and nodetool's snapshot semantics (flush, then
// hard-link every live SSTable into snapshots/<tag>/). It backs the embedded
// demo, the test suite and the SSH integration tier.
//
// Every operation that touches the memtable, the SSTables or the snapshots
// holds an exclusive flock on root/.lock, so a writer in one process and
// "nodetool snapshot" in another never lose or duplicate a row.
package simnode
