// Package proc runs the real binaries as separate OS processes for tests:
// it builds `quiesce` and `nats-server` (from the module's own dependency)
// with the Go toolchain, starts them with their output in a log file,
// and kills, stops (SIGSTOP), continues and restarts them. NATSCluster runs
// a JetStream cluster of nats-server processes on loopback ports.
package proc
