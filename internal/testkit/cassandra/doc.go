// Package cassandra runs real Apache Cassandra 5.0.6 nodes for tests: the
// server and nodetool from Maven Central's cassandra-all, on 127.0.0.N, each
// node with its own directory, JMX port, DC and rack.
//
//	c := cassandra.Start(t, cassandra.Options{Nodes: 3})  // every node UN
//	s := c.Session(t)                                      // gocql, closed at the end
//	n := c.Node(1)
//	n.MustNodetool(t, "snapshot", "-t", "tag")             // or n.Nodetool(ctx, ...), n.NodetoolArgv(...)
//	n.Kill()                                               // or n.Stop(ctx): SIGTERM, then SIGKILL
//	err := n.Start(ctx)                                    // again, on n.DataDir() and the rest
//
// The classpath is resolved with Maven once per pom (conf/pom.xml) and
// cached (see ResolveClasspath); Java 17 is needed on every run, Maven only
// when the cache misses. When either is missing the test is skipped with a
// message naming the package to install, or fails when
// QUIESCE_REQUIRE_INTEGRATION is set.
//
// A node takes about 1 GiB and 8 to 30 s to start (more on a loaded 2-core
// machine), and every nodetool call is a JVM of its own (0.7 to 2 s). Nodes of
// concurrently running tests never share an address: each address is leased
// through a lock file, machine-wide, and New waits for a lease another test
// holds. At the end of a test its nodes are killed.
//
// The package itself has no build tag so that other tiers can import it under
// their own; its tests that start Cassandra are under the tag `cassandra`.
package cassandra
