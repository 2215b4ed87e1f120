// Package e2e backs up real Apache Cassandra 5.0.6 clusters end to end:
// three nodes on 127.0.0.1-3 (internal/testkit/cassandra), RF 3, a writer
// writing throughout, every job through the planner, the coordinator and
// workers (internal/testkit/stack) on an embedded JetStream, nodetool run
// by the local executor or behind a real OpenSSH sshd, the fs snapshotter
// standing in for EBS with each node's data directory as its volume. Its
// tests are under the build tag `cassandra` (make test-cassandra);
// TestDemo is make demo-cassandra.
package e2e
