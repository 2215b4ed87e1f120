// Package netfault is a TCP proxy on a loopback port that a test can make
// misbehave between a client and its server: stall every byte (a partition
// that keeps the connections open), reset every connection, or delay what
// it forwards. The chaos suite puts one between each worker process and
// NATS, and one between the workers and SSH.
package netfault
