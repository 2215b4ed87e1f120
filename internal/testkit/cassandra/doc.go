// Package cassandra runs real Apache Cassandra 5.0.6 nodes for tests: the
// server and nodetool from Maven Central's cassandra-all, on 127.0.0.N, each
// node with its own directory, JMX port, DC and rack.
//
// Start brings up a cluster of 1 to 6 nodes and stops it when the test ends.
// The classpath is resolved with Maven once per pom and cached (see
// ResolveClasspath); Java 17 is needed on every run, Maven only when the
// cache misses. When either is missing the test is skipped with a message
// naming the package to install, or fails when QUIESCE_REQUIRE_INTEGRATION
// is set.
//
// A node takes about 1 GiB and 7 to 10 s to start, and every nodetool call is
// a JVM of its own (1 to 2 s). Nodes of concurrently running test binaries
// never share an address: each address is leased through a lock file, and a
// Start waits for a lease another process holds.
//
// The package itself has no build tag so that other tiers can import it under
// their own; its tests that start Cassandra are under the tag `cassandra`.
package cassandra
