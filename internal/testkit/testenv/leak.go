package testenv

import "go.uber.org/goleak"

// LeakOptions are the goleak exceptions every package's TestMain uses. Each
// names a goroutine of a library that outlives Close by design or by a known
// library race, never one of quiesce's.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		// nats.go: the async-publish reconnect watcher reads a status
		// channel that Close can nil out first; it parks forever.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
		// nats-server: background loops end shortly after WaitForShutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
		// gocql: a node-up event (a restarted node) sleeps up to 10 s in
		// the driver before it refills the pool; Close does not wake it.
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*Session).handleNodeUp"),
	}
}
